"""XRDZoo, the built-in X-ray diffraction library: peak finders measured on simulated powder patterns.

    python -m modsnet.offline.zoo.xrd --out modsnet/libraries/xrdzoo --work .cache/xrdzoo --jobs 1 --seed 0

Datasets. Every crystal structure that ships with Dans_Diffraction is simulated once: its reflections up
to |Q| = `Q_MAX`, with X-ray structure factors from Dans_Diffraction. Exact twins (FCC.cif is Copper.cif)
and structures with fewer than `MIN_REFLECTIONS` reflections (the 1 Å toy Cubic.cif) are left out. Each
structure gets `CONDITIONS_PER_STRUCTURE` condition sets drawn from seeded grids: radiation (Cu, Co, Cr,
Mo or Ag Kα1), 2θ range and step, counting level, background shape and level, broadening (pseudo-Voigt
FWHM growing with tan θ), Lorentzian fraction and zero shift. A dataset is `PATTERNS` patterns of one
structure under one condition set, rendered in numpy: they differ in texture (each reflection's intensity
times a lognormal factor), counting level, background details and Poisson noise. Dataset ids read
`<structure>-<radiation><2θ range>-s<step>-c<counts>-<background><level>-w<FWHM at 90°>-z<zero shift>`,
e.g. `Silicon-cu10-80-s0.02-c1000-linear0.05-w0.1-z-0.03`.

Truth. A pattern's true peaks are the maxima of its noiseless, background-free profile that rise at least
`TRUE_PEAK_SHARE` of the tallest peak above their surroundings (scipy prominence), where they appear (zero
shift included: a finder is judged on finding peaks, not on calibrating the instrument). Reflections
closer than the peak width make one peak, as in a measured pattern.

Scores. `score` is the mean over a dataset's patterns of the peak F1, found and true peaks matched
one-to-one within ±`TOLERANCE_DEG` (0.1°, twice the coarsest step, 0.05°), beside `precision`, `recall`,
`position_error` (mean |Δ2θ| of matched pairs, degrees), `inference_seconds` (mean wall time of one
`find` call on one thread) and `train_seconds` (0 for classical finders; for a CNN, simulating its
training patterns, fitting and choosing its threshold). The wavelet finders, ~100 times slower than the
rest (scipy's ridge-line filtering), are scored on each dataset's first `CWT_PATTERNS` patterns only
(models.csv `scored_patterns`).

Models. Classical finders over parameter grids (`modsnet.models.peaks` specs: scipy `find_peaks` after
smoothing and background removal, with prominence and width thresholds; first-derivative zero crossings
with curvature thresholds; wavelet (CWT) ridges), runnable from `artifacts/<model_id>.json`; and small
dilated 1-D CNNs trained here with torch, runnable from `artifacts/<model_id>.onnx`.

CNN split. Structures are grouped by chemical formula (near-twins such as the two Sr3LiRuO6 files fall
together) and the groups dealt into `FOLDS` folds by a seeded shuffle. Each CNN variant is trained once
per fold, on fresh patterns (never the library's) of the *other* folds' structures, and is scored only on
the datasets of its own fold, whose structures it never saw: every dataset has one score from each
variant, always from a network blind to that structure. models.csv names each CNN's fold and structures.

Everything is deterministic for a seed. Results are appended to `<work>/results.jsonl` keyed by all that
determines them and trained networks kept in `<work>/cnn/`, so an interrupted run resumes and a changed
setting is measured again. `dataset_features/xrd.csv` holds `modsnet.features.xrd.xrd_features` of each
dataset's patterns as `Scan` objects (wavelength stated), the function that describes an uploaded scan.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
import warnings
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import Dans_Diffraction
import numpy as np
import onnx
import pandas as pd
import scipy
import torch
import yaml
from scipy import signal, sparse
from threadpoolctl import threadpool_limits
from torch import nn

from modsnet.features.xrd import FEATURE_NAMES, FEATURE_SET, Scan, xrd_features
from modsnet.models.peaks import (
    METADATA_KEY,
    PeakFinder,
    heatmap_peaks,
    load_finder,
    match_peaks,
    neural_input,
    refine_maxima,
)
from modsnet.offline.zoo.common import Progress, choose, load_results, swap_in, worker_pool
from modsnet.runtime.errors import InvalidArgument

__all__ = [
    "Conditions",
    "DatasetPlan",
    "FinderSetting",
    "Generated",
    "Pattern",
    "Structure",
    "finder_settings",
    "generate",
    "load_structures",
    "main",
    "plan_datasets",
    "sample_conditions",
    "simulate",
]

TOLERANCE_DEG = 0.1
Q_MAX = 9.0  # Å⁻¹: every 2θ for Cu, Co, Cr; up to 61° for Mo and 47° for Ag, beyond which no range reaches
PATTERNS = 20
CWT_PATTERNS = 4  # the wavelet finders cost ~50 ms a pattern (scipy's ridge filtering): scored on the first 4
CONDITIONS_PER_STRUCTURE = 10
FOLDS = 3
TRUE_PEAK_SHARE = 0.02
MIN_REFLECTIONS = 5  # reflections of at least 1% of the strongest, for a structure to be worth a dataset
MIN_VISIBLE = 3  # reflections in range above the truth threshold, for a condition set to be drawn
MAX_POINTS = 8_000
TEXTURE_SIGMA = 0.25  # lognormal σ of each reflection's intensity, pattern to pattern
JITTER_SIGMA = 0.2  # lognormal σ of counting and background level, pattern to pattern
PROFILE_REACH = 15.0  # a peak is rendered to this many FWHM either side (Lorentzian tail < 0.2% beyond)
SIMULATOR = "xrdzoo-simulator/1"  # bump whenever the same conditions would render different patterns

SOURCES: dict[str, float] = {"cu": 1.54056, "co": 1.78897, "cr": 2.28970, "mo": 0.70932, "ag": 0.55941}
"""Kα1 wavelengths (Å) of the usual anodes."""
SOURCE_WEIGHTS = {"cu": 0.35, "co": 0.15, "cr": 0.1, "mo": 0.25, "ag": 0.15}
RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "cu": ((10, 80), (5, 90), (20, 100), (30, 120), (10, 140)),
    "co": ((10, 80), (5, 90), (20, 100), (30, 120), (10, 140)),
    "cr": ((15, 100), (20, 140), (30, 150)),
    "mo": ((5, 40), (3, 60), (10, 50)),
    "ag": ((3, 30), (5, 45)),
}
STEPS = (0.01, 0.02, 0.03, 0.05)
BROADENINGS = (0.05, 0.1, 0.2, 0.4)  # FWHM at 2θ = 90°, degrees
LORENTZ_FRACTIONS = (0.0, 0.3, 0.6)
ZERO_SHIFTS = (0.0, 0.0, 0.02, -0.03, 0.05, -0.08)
BACKGROUNDS = ("flat", "linear", "decay", "hump")
CONDITION_FAMILIES: dict[str, dict[str, tuple[float, ...]]] = {
    "all": {"peak_counts": (30, 100, 300, 1_000, 3_000, 10_000, 100_000), "background_level": (0.01, 0.05, 0.2, 1.0)},
    "clean": {"peak_counts": (1_000, 3_000, 10_000, 100_000), "background_level": (0.01, 0.05)},
    "noisy": {"peak_counts": (30, 100, 300), "background_level": (0.2, 1.0)},
}
"""Counting levels (counts at the tallest peak) and background levels (relative to it): the library draws
from "all"; the CNN variants train on one family each."""

CNN_VARIANTS: dict[str, dict[str, Any]] = {
    "all": {"channels": 16, "conditions": "all"},
    "clean": {"channels": 16, "conditions": "clean"},
    "noisy": {"channels": 16, "conditions": "noisy"},
}
CNN_LAYERS = 5  # dilations 1..16: with kernel 7, 187 points (3.7° at 0.02°) of context per output
CNN_KERNEL = 7
CNN_GRID_STEP = 0.02
CNN_THRESHOLDS = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5)  # candidates; the one with the best validation F1 is kept
CNN_MIN_SEPARATION = 0.06  # degrees between two reported peaks
TRAIN_PATTERNS = 256
TRAIN_STEPS = 1_200
TRAIN_BATCH = 16
TRAIN_CROP = 512  # grid points per training window
TRAIN_RATE = 5e-3
VALIDATION_PATTERNS = 48  # fresh patterns of the training structures that choose the threshold
TARGET_SIGMA_DEG = 0.05  # width of the Gaussian bump a true peak leaves in the training target

_DANS_VERSION = Dans_Diffraction.__version__


# ----------------------------------------------------------------------------------------------- structures


@dataclass(frozen=True, eq=False)
class Structure:
    """A crystal structure reduced to what a powder pattern needs: distinct |Q| and summed |F|² there."""

    name: str
    file: str
    formula: str
    q: np.ndarray  # Å⁻¹, ascending
    intensity: np.ndarray  # |F|² summed over the symmetry-equivalent reflections (multiplicity included)

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.q.tobytes() + self.intensity.tobytes()).hexdigest()[:16]


def _structure_files() -> list[Path]:
    folder = Path(Dans_Diffraction.__file__).parent / "Structures"
    return sorted([*folder.glob("*.cif"), *folder.glob("*.mcif")], key=lambda path: path.name)


def _structure_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", path.stem).strip("-")


def _simulate_structure(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """(formula, |Q|, |F|²) of a structure file: every reflection up to Q_MAX, equal |Q| summed."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crystal = Dans_Diffraction.Crystal(str(path))
        hkl = crystal.Cell.all_hkl(maxq=Q_MAX)
        q = crystal.Cell.Qmag(hkl)
        hkl, q = hkl[q > 1e-6], q[q > 1e-6]
        intensity = np.asarray(crystal.Scatter.intensity(hkl, "xray"), dtype=float)
        formula = str(crystal.Properties.molname())
    distinct, inverse = np.unique(np.round(q, 5), return_inverse=True)
    return formula, distinct, np.bincount(inverse, intensity)


def load_structures(cache: Path | None = None, names: Sequence[str] | None = None) -> list[Structure]:
    """The usable Dans_Diffraction structures, by name: twins and near-empty ones dropped, failures skipped.

    `cache` keeps each simulation (an .npz per file, keyed by the Dans_Diffraction version) for the next
    run. `names` restricts to these names (the rules still apply among them).
    """
    structures: list[Structure] = []
    for path in _structure_files():
        name = _structure_name(path)
        if names is not None and name not in names:
            continue
        stored = cache / f"{path.stem}-{_DANS_VERSION}-q{Q_MAX:g}.npz" if cache else None
        if stored and stored.exists():
            with np.load(stored) as saved:
                formula, q, intensity = str(saved["formula"]), saved["q"], saved["intensity"]
        else:
            try:
                formula, q, intensity = _simulate_structure(path)
            except Exception as exc:  # a structure file the library cannot read is skipped, not fatal
                print(f"xrdzoo: {path.name} does not simulate ({type(exc).__name__}: {exc})", file=sys.stderr)
                continue
            if stored:
                stored.parent.mkdir(parents=True, exist_ok=True)
                np.savez(stored, formula=formula, q=q, intensity=intensity)
        if len(intensity) == 0 or (intensity >= 0.01 * intensity.max()).sum() < MIN_REFLECTIONS:
            continue
        twin = next((s for s in structures if _same(s, q, intensity)), None)
        if twin is None:
            structures.append(Structure(name, path.name, formula, q, intensity))
    if names is not None and len(structures) < len(set(names)):
        known = {s.name for s in structures}
        raise InvalidArgument(f"unknown or unusable structures {sorted(set(names) - known)}")
    return structures


def _same(structure: Structure, q: np.ndarray, intensity: np.ndarray) -> bool:
    return (
        structure.q.shape == q.shape
        and np.allclose(structure.q, q, rtol=1e-6)
        and np.allclose(structure.intensity, intensity, rtol=1e-4)
    )


def assign_folds(structures: Sequence[Structure], seed: int, folds: int = FOLDS) -> dict[str, int]:
    """Structure name -> fold: formula groups shuffled by the seed and dealt round-robin."""
    groups = sorted({s.formula for s in structures})
    count = min(folds, len(groups))
    order = np.random.default_rng(seed).permutation(len(groups))
    fold_of = {groups[g]: position % count for position, g in enumerate(order)}
    return {s.name: fold_of[s.formula] for s in structures}


# ----------------------------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Conditions:
    """How a set of patterns is measured and what the sample does to its peaks."""

    source: str  # a key of SOURCES
    two_theta_min: float
    two_theta_max: float
    step: float
    peak_counts: float  # counts at the tallest peak, above background
    background: str  # one of BACKGROUNDS
    background_level: float  # the background's maximum, relative to the tallest peak
    broadening: float  # FWHM at 2θ = 90°, degrees
    lorentz_fraction: float
    zero_shift: float  # degrees

    @property
    def wavelength(self) -> float:
        return SOURCES[self.source]

    @property
    def n_points(self) -> int:
        return math.floor((self.two_theta_max - self.two_theta_min) / self.step + 1e-9) + 1  # never past the end

    @property
    def slug(self) -> str:
        return (
            f"{self.source}{self.two_theta_min:g}-{self.two_theta_max:g}-s{self.step:g}-c{self.peak_counts:g}"
            f"-{self.background}{self.background_level:g}-w{self.broadening:g}-z{self.zero_shift:g}"
        )

    def fwhm(self, two_theta: np.ndarray) -> np.ndarray:
        """FWHM (degrees) at each 2θ: broadening·√((1 + tan²θ)/2), a Caglioti curve with U = W."""
        tangent = np.tan(np.radians(two_theta) / 2)
        return self.broadening * np.sqrt((1 + tangent**2) / 2)


def sample_conditions(rng: np.random.Generator, family: str = "all") -> Conditions:
    """One condition set from the grids; steps keep ≥ 2 points per FWHM, ≤ 20, and ≤ MAX_POINTS points."""
    levels = CONDITION_FAMILIES[family]
    source = str(rng.choice(list(SOURCE_WEIGHTS), p=list(SOURCE_WEIGHTS.values())))
    low, high = RANGES[source][rng.integers(len(RANGES[source]))]
    broadening = float(rng.choice(BROADENINGS))
    while not (steps := _steps(broadening, high - low)):  # a wide range with sharp peaks: narrow it until one fits
        high -= 10
    return Conditions(
        source=source,
        two_theta_min=float(low),
        two_theta_max=float(high),
        step=float(rng.choice(steps)),
        peak_counts=float(rng.choice(levels["peak_counts"])),
        background=str(rng.choice(BACKGROUNDS)),
        background_level=float(rng.choice(levels["background_level"])),
        broadening=broadening,
        lorentz_fraction=float(rng.choice(LORENTZ_FRACTIONS)),
        zero_shift=float(rng.choice(ZERO_SHIFTS)),
    )


def _steps(broadening: float, span: float) -> list[float]:
    """The steps that give the narrowest peak (FWHM broadening/√2) 2+ points, the FWHM at 90° at most 20,
    and the range at most MAX_POINTS points."""
    return [
        s for s in STEPS if broadening / math.sqrt(2) / s >= 2 and broadening / s <= 20 and span / s + 1 <= MAX_POINTS
    ]


def _reflections(structure: Structure, conditions: Conditions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(2θ, integrated intensity, FWHM) of the reflections that reach the scan range.

    Intensity is |F|² (multiplicity included) times the Lorentz-polarisation factor of a powder
    diffractometer, (1 + cos² 2θ) / (sin² θ cos θ).
    """
    sine = structure.q * conditions.wavelength / (4 * math.pi)
    reachable = sine < 1
    theta = np.arcsin(sine[reachable])
    two_theta = np.degrees(2 * theta) + conditions.zero_shift
    lorentz_polarisation = (1 + np.cos(2 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))
    intensity = structure.intensity[reachable] * lorentz_polarisation
    fwhm = conditions.fwhm(two_theta)
    # A reflection 5 FWHM outside the range adds at most ~1% of its height at the range's edge.
    near = (two_theta > conditions.two_theta_min - 5 * fwhm) & (two_theta < conditions.two_theta_max + 5 * fwhm)
    if not near.any():
        return two_theta[near], intensity[near], fwhm[near]
    keep = near & (intensity >= 1e-5 * intensity[near].max())  # weaker ones change no count
    return two_theta[keep], intensity[keep], fwhm[keep]


def _visible(structure: Structure, conditions: Conditions) -> int:
    """Reflections in range whose peak height would pass the truth threshold (overlaps not counted)."""
    two_theta, intensity, fwhm = _reflections(structure, conditions)
    inside = (two_theta >= conditions.two_theta_min) & (two_theta <= conditions.two_theta_max)
    height = intensity[inside] / fwhm[inside]
    return int((height >= TRUE_PEAK_SHARE * height.max()).sum()) if len(height) else 0


# ----------------------------------------------------------------------------------------------- datasets


@dataclass(frozen=True, eq=False)
class DatasetPlan:
    """A dataset of the library: one structure under one condition set, in the given CNN fold."""

    dataset_id: str
    structure: Structure
    conditions: Conditions
    fold: int


def plan_datasets(
    structures: Sequence[Structure], folds: Mapping[str, int], seed: int, per_structure: int
) -> list[DatasetPlan]:
    """`per_structure` distinct condition sets per structure, each showing at least MIN_VISIBLE peaks.

    Each structure draws from its own generator (seeded by the seed and its name), so adding or dropping a
    structure leaves the others' datasets as they were.
    """
    plans: list[DatasetPlan] = []
    for structure in structures:
        rng = np.random.default_rng([seed, zlib.crc32(structure.name.encode())])
        chosen: dict[str, Conditions] = {}
        for _ in range(100 * per_structure):
            if len(chosen) == per_structure:
                break
            conditions = sample_conditions(rng)
            if conditions.slug not in chosen and _visible(structure, conditions) >= MIN_VISIBLE:
                chosen[conditions.slug] = conditions
        plans.extend(
            DatasetPlan(f"{structure.name}-{slug}", structure, conditions, folds[structure.name])
            for slug, conditions in chosen.items()
        )
    return sorted(plans, key=lambda plan: plan.dataset_id)


@dataclass(frozen=True, eq=False)
class Pattern:
    """One simulated scan: 2θ (degrees), counts, and the true peak positions."""

    two_theta: np.ndarray
    counts: np.ndarray
    peaks: np.ndarray


def _profile_basis(x: np.ndarray, centres: np.ndarray, fwhm: np.ndarray, eta: float) -> sparse.csr_matrix:
    """Points × reflections matrix of unit-area pseudo-Voigt peaks, each cut at PROFILE_REACH FWHM."""
    step = float(x[1] - x[0])
    centre = (centres - x[0]) / step
    reach = np.ceil(PROFILE_REACH * fwhm / step).astype(int)
    start = np.clip(np.floor(centre).astype(int) - reach, 0, len(x))
    stop = np.clip(np.ceil(centre).astype(int) + reach + 1, 0, len(x))
    lengths = np.maximum(stop - start, 0)
    columns = np.repeat(np.arange(len(centres)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = np.repeat(start, lengths) + offsets
    width = fwhm[columns]
    u = ((x[rows] - centres[columns]) / width) ** 2
    values = (eta / (1 + 4 * u) * (2 / math.pi) + (1 - eta) * np.exp(-4 * math.log(2) * u) * 0.9394) / width
    return sparse.csr_matrix((values, (rows, columns)), shape=(len(x), len(centres)))


def _background_shape(x: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A background of the given kind, at most 1: flat, linear, decaying from low angles, or an amorphous hump."""
    span = float(x[-1] - x[0])
    if kind == "flat":
        return np.ones_like(x)
    if kind == "linear":
        low, rising = rng.uniform(0.2, 0.6), rng.random() < 0.5
        t = (x - x[0]) / span
        return low + (1 - low) * (t if rising else 1 - t)
    if kind == "decay":
        return 0.15 + 0.85 * np.exp(-(x - x[0]) / rng.uniform(4, 15))
    centre, width = x[0] + rng.uniform(0, 0.5) * span, rng.uniform(3, 8)
    return 0.3 + 0.7 * np.exp(-0.5 * ((x - centre) / width) ** 2)


def _true_peaks(x: np.ndarray, profile: np.ndarray) -> np.ndarray:
    index, _ = signal.find_peaks(profile, prominence=TRUE_PEAK_SHARE * float(profile.max()))
    return np.interp(refine_maxima(profile, index), np.arange(len(x)), x)


def simulate(structure: Structure, conditions: Conditions, n: int, seed: Sequence[int]) -> list[Pattern]:
    """`n` patterns of a structure under a condition set; the same arguments give the same patterns."""
    x = conditions.two_theta_min + conditions.step * np.arange(conditions.n_points)
    centres, intensity, fwhm = _reflections(structure, conditions)
    basis = _profile_basis(x, centres, fwhm, conditions.lorentz_fraction)
    rng = np.random.default_rng(list(seed))
    patterns = []
    for _ in range(n):
        profile = basis @ (intensity * rng.lognormal(0.0, TEXTURE_SIGMA, len(intensity)))
        profile /= max(float(profile.max()), 1e-300)
        counts = conditions.peak_counts * rng.lognormal(0.0, JITTER_SIGMA)
        level = conditions.background_level * rng.lognormal(0.0, JITTER_SIGMA)
        expected = counts * (profile + level * _background_shape(x, conditions.background, rng))
        patterns.append(Pattern(x, rng.poisson(expected).astype(float), _true_peaks(x, profile)))
    return patterns


def _dataset_seed(seed: int, dataset_id: str) -> list[int]:
    return [seed, zlib.crc32(dataset_id.encode())]


# ----------------------------------------------------------------------------------------------- finders


@dataclass(frozen=True)
class FinderSetting:
    """A model of the library: a classical spec (`modsnet.models.peaks`), or a CNN's architecture and training."""

    model_id: str
    family: str  # find_peaks | derivative | cwt | cnn
    spec: Mapping[str, Any]

    @property
    def neural(self) -> bool:
        return self.family == "cnn"

    def scored_patterns(self, patterns: int) -> int:
        """How many of a dataset's patterns this finder is scored on: all, but for the slow wavelet finders."""
        return min(patterns, CWT_PATTERNS) if self.family == "cwt" else patterns


def finder_settings(folds: int = FOLDS, train_steps: int = TRAIN_STEPS) -> list[FinderSetting]:
    """The library's finders: classical grids, and every CNN variant once per fold (none with one fold)."""
    settings: list[FinderSetting] = []
    thresholds: list[tuple[float, str, str]] = [(p, "max", f"{p:g}") for p in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)]
    thresholds += [(k, "noise", f"{k:g}sd") for k in (3, 5, 8, 12)]
    smoothing: list[tuple[str, float, str]] = [
        ("none", 0, "raw"),
        ("savgol", 7, "sg7"),
        ("savgol", 15, "sg15"),
        ("savgol", 25, "sg25"),
    ]
    smoothing += [("gaussian", 1.5, "g1.5"), ("gaussian", 3, "g3")]
    for smooth, points, smooth_tag in smoothing:
        for background in (0.0, 2.0):
            for prominence, unit, tag in thresholds:
                for width in (0, 3):
                    spec = {
                        "kind": "find_peaks",
                        "smooth": smooth,
                        "smooth_points": points,
                        "background": background,
                        "prominence": prominence,
                        "relative_to": unit,
                        "min_width": width,
                    }
                    background_tag = f"bg{background:g}" if background else "nobg"
                    model_id = f"fp-{smooth_tag}-{background_tag}-p{tag}-w{width}"
                    settings.append(FinderSetting(model_id, "find_peaks", spec))
    curvatures: list[tuple[float, str, str]] = [
        (c, "max", f"{c:g}") for c in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
    ]
    curvatures += [(k, "noise", f"{k:g}sd") for k in (3, 5, 8, 12)]
    for sigma in (1, 1.5, 2, 3, 5):
        for curvature, unit, tag in curvatures:
            spec = {"kind": "derivative", "smooth_points": sigma, "curvature": curvature, "relative_to": unit}
            settings.append(FinderSetting(f"deriv-g{sigma:g}-c{tag}", "derivative", spec))
    for widths in ((2, 3, 4, 6, 8), (4, 8, 16, 32)):
        for snr in (2, 3):
            spec = {"kind": "cwt", "widths": list(widths), "min_snr": snr, "noise_perc": 10}
            settings.append(FinderSetting(f"cwt-w{widths[0]}-{widths[-1]}x{len(widths)}-snr{snr}", "cwt", spec))
    if folds >= 2:
        for variant, options in CNN_VARIANTS.items():
            for fold in range(folds):
                spec = {
                    **options,
                    "layers": CNN_LAYERS,
                    "kernel": CNN_KERNEL,
                    "grid_step": CNN_GRID_STEP,
                    "thresholds": list(CNN_THRESHOLDS),
                    "min_separation": CNN_MIN_SEPARATION,
                    "fold": fold,
                    "train_patterns": TRAIN_PATTERNS,
                    "train_steps": train_steps,
                    "batch": TRAIN_BATCH,
                    "crop": TRAIN_CROP,
                    "learning_rate": TRAIN_RATE,
                    "target_sigma": TARGET_SIGMA_DEG,
                }
                settings.append(FinderSetting(f"cnn-{variant}-fold{fold}", "cnn", spec))
    return settings


class _Detector(nn.Module):
    """Dilated 1-D convolutions (dilation doubling per layer) to one logit per point: wide context, few weights."""

    def __init__(self, channels: int, layers: int, kernel: int):
        super().__init__()
        blocks: list[nn.Module] = []
        width = 1
        for layer in range(layers):
            dilation = 2**layer
            blocks += [
                nn.Conv1d(width, channels, kernel, dilation=dilation, padding=dilation * (kernel // 2)),
                nn.ReLU(),
            ]
            width = channels
        blocks.append(nn.Conv1d(channels, 1, 1))
        self.body = nn.Sequential(*blocks)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.body(values)


class _Probabilities(nn.Module):
    """The detector with a sigmoid: what the ONNX file computes."""

    def __init__(self, detector: _Detector):
        super().__init__()
        self.detector = detector

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.detector(values))


def _target(grid: np.ndarray, peaks: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian bump of height 1 at each true peak (the maximum where bumps overlap)."""
    target = np.zeros(len(grid), dtype=np.float32)
    step = float(grid[1] - grid[0])
    reach = math.ceil(4 * sigma / step)
    for peak in peaks:
        centre = round((peak - grid[0]) / step)
        window = slice(max(centre - reach, 0), min(centre + reach + 1, len(grid)))
        bump = np.exp(-0.5 * ((grid[window] - peak) / sigma) ** 2)
        target[window] = np.maximum(target[window], bump)
    return target


def train_cnn(setting: FinderSetting, structures: Sequence[Structure], seed: int) -> tuple[bytes, float, float]:
    """Train one CNN on fresh patterns of `structures`: (ONNX bytes, chosen threshold, seconds spent).

    The threshold is chosen on further fresh patterns of the same structures, never on library datasets.
    """
    started = time.perf_counter()
    spec = setting.spec
    identity = [seed, zlib.crc32(setting.model_id.encode())]
    rng = np.random.default_rng(identity)
    torch.manual_seed(int(rng.integers(2**31)))
    inputs, targets = [], []
    for grid, values, peaks in _training_patterns(spec, structures, rng, [*identity, 0], spec["train_patterns"]):
        pad = max(spec["crop"] - len(values), 0)
        inputs.append(np.pad(values, (0, pad)))
        targets.append(np.pad(_target(grid, peaks, spec["target_sigma"]), (0, pad)))
    model = _Detector(spec["channels"], spec["layers"], spec["kernel"])
    optimiser = torch.optim.Adam(model.parameters(), lr=spec["learning_rate"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, spec["train_steps"])
    crop = spec["crop"]
    for _ in range(spec["train_steps"]):
        chosen = rng.integers(len(inputs), size=spec["batch"])
        starts = [int(rng.integers(len(inputs[c]) - crop + 1)) for c in chosen]
        batch = np.stack([inputs[c][s : s + crop] for c, s in zip(chosen, starts, strict=True)])
        truth = np.stack([targets[c][s : s + crop] for c, s in zip(chosen, starts, strict=True)])
        logits = model(torch.from_numpy(batch)[:, None, :])
        loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(truth)[:, None, :])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    model.eval()
    threshold = _calibrate(model, spec, _training_patterns(spec, structures, rng, [*identity, 1], VALIDATION_PATTERNS))
    data = _export(model, setting, threshold, [s.name for s in structures])
    return data, threshold, time.perf_counter() - started


def _training_patterns(
    spec: Mapping[str, Any], structures: Sequence[Structure], rng: np.random.Generator, seed: list[int], n: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(grid, network input, true peaks) of `n` fresh patterns drawn from the variant's condition family."""
    drawn = []
    for i in range(n):
        structure = structures[int(rng.integers(len(structures)))]
        (pattern,) = simulate(structure, sample_conditions(rng, spec["conditions"]), 1, [*seed, i])
        grid, values = neural_input(pattern.two_theta, pattern.counts, spec["grid_step"])
        drawn.append((grid, values, pattern.peaks))
    return drawn


def _calibrate(
    model: _Detector, spec: Mapping[str, Any], patterns: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> float:
    """The candidate threshold with the best mean F1 on the given patterns (ties: the one nearest 0.5)."""
    scores: dict[float, list[float]] = {t: [] for t in spec["thresholds"]}
    with torch.no_grad():
        for grid, values, peaks in patterns:
            probability = torch.sigmoid(model(torch.from_numpy(values)[None, None, :])).numpy().ravel()
            for threshold, kept in scores.items():
                found = heatmap_peaks(grid, probability, threshold, spec["min_separation"])
                kept.append(match_peaks(found, peaks, TOLERANCE_DEG).f1)
    return max(scores, key=lambda t: (round(float(np.mean(scores[t])), 6), -abs(t - 0.5)))


def _export(model: _Detector, setting: FinderSetting, threshold: float, trained_on: list[str]) -> bytes:
    """The detector (with its sigmoid) as ONNX bytes, any input length, metadata for `NeuralFinder`."""
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "model.onnx"
        torch.onnx.export(
            _Probabilities(model),
            (torch.zeros(1, 1, setting.spec["crop"]),),
            path,
            input_names=["intensity"],
            output_names=["probability"],
            dynamic_axes={"intensity": {2: "points"}, "probability": {2: "points"}},
            opset_version=17,
            dynamo=False,
        )
        graph = onnx.load(path)
    metadata = {
        "model_id": setting.model_id,
        "library": "xrdzoo",
        **dict(setting.spec),
        "threshold": threshold,
        "trained_on_structures": trained_on,
        "input": "sqrt(counts - min) / max, linearly interpolated onto a grid of grid_step degrees",
    }
    onnx.helper.set_model_props(graph, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    return graph.SerializeToString()


# ----------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class _Task:
    plan: DatasetPlan
    seed: int
    patterns: int
    features_key: str  # empty when the dataset's features are already known
    finders: tuple[tuple[str, str, str, int], ...]  # (result key, model id, spec JSON or ONNX path, patterns)


def _init_worker() -> None:
    """One thread per worker: `--jobs` processes already use the cores, and timings stay comparable."""
    threadpool_limits(limits=1)
    torch.set_num_threads(1)


@functools.cache
def _finder(source: str) -> PeakFinder:
    """A finder, loaded once per worker; a network runs once first, so its timings exclude session warm-up."""
    if not source.endswith(".onnx"):
        return load_finder(json.loads(source))
    finder = load_finder(source)
    finder.find(np.linspace(10.0, 40.0, 1_500), np.ones(1_500))
    return finder


def _run(task: _Task) -> list[dict[str, Any]]:
    """Simulate a dataset, describe it if asked, and score each finder on its patterns."""
    plan = task.plan
    patterns = simulate(plan.structure, plan.conditions, task.patterns, _dataset_seed(task.seed, plan.dataset_id))
    records: list[dict[str, Any]] = []
    if task.features_key:
        scans = [Scan(p.two_theta, p.counts, plan.conditions.wavelength, {"format": "simulated"}) for p in patterns]
        records.append(
            {
                "key": task.features_key,
                "kind": "dataset",
                "dataset_id": plan.dataset_id,
                "features": xrd_features(scans),
                "true_peaks": float(np.mean([len(p.peaks) for p in patterns])),
            }
        )
    for key, model_id, source, scored in task.finders:
        finder = _finder(source)
        matches, seconds = [], []
        for pattern in patterns[:scored]:
            started = time.perf_counter()
            found = finder.find(pattern.two_theta, pattern.counts)
            seconds.append(time.perf_counter() - started)
            matches.append(match_peaks(found, pattern.peaks, TOLERANCE_DEG))
        errors = [m.position_error for m in matches if m.matched]
        records.append(
            {
                "key": key,
                "kind": "pair",
                "model_id": model_id,
                "dataset_id": plan.dataset_id,
                "score": float(np.mean([m.f1 for m in matches])),
                "precision": float(np.mean([m.precision for m in matches])),
                "recall": float(np.mean([m.recall for m in matches])),
                "position_error": float(np.mean(errors)) if errors else None,
                "inference_seconds": float(np.mean(seconds)),
            }
        )
    return records


def _hash(identity: Any) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def _dataset_identity(plan: DatasetPlan, seed: int, patterns: int) -> dict[str, Any]:
    """Everything a dataset's patterns depend on."""
    return {
        "dataset": plan.dataset_id,
        "conditions": asdict(plan.conditions),
        "structure": plan.structure.digest,
        "seed": seed,
        "patterns": patterns,
        "simulator": [SIMULATOR, TRUE_PEAK_SHARE, np.__version__, scipy.__version__],
    }


# ----------------------------------------------------------------------------------------------- generating


@dataclass(frozen=True)
class Generated:
    """What a run produced: library counts, and how much was measured or trained now versus reused."""

    models: int
    datasets: int
    interactions: int
    measured: int
    reused: int
    trained: int
    seconds: float


@dataclass(frozen=True)
class _Network:
    path: Path
    train_seconds: float
    threshold: float
    trained_on: list[str]


def generate(
    out: Path,
    work: Path,
    *,
    jobs: int = 1,
    seed: int = 0,
    structures: Sequence[str] | None = None,
    conditions: int = CONDITIONS_PER_STRUCTURE,
    patterns: int = PATTERNS,
    models: Sequence[str] | None = None,
    train_steps: int = TRAIN_STEPS,
    progress: TextIO | None = sys.stderr,
) -> Generated:
    """Train the missing CNNs, measure every (finder, dataset) pair not already in `work`, write the bundle.

    `structures` are structure names and `models` model ids (all by default); `conditions` is the number of
    condition sets per structure and `patterns` the patterns per dataset. The bundle is written beside `out`
    and renamed into place, so a reader never sees half a library.
    """
    started = time.monotonic()
    loaded = load_structures(work / "structures", structures)
    folds = assign_folds(loaded, seed)
    plans = plan_datasets(loaded, folds, seed, conditions)
    settings = choose(finder_settings(len(set(folds.values())), train_steps), models, lambda s: s.model_id, "model")
    networks, trained = _train(settings, loaded, folds, work / "cnn", seed, jobs, progress)

    results_path = work / "results.jsonl"
    results = load_results(results_path)
    tasks, pairs, dataset_keys = [], [], {}
    for plan in plans:
        identity = _dataset_identity(plan, seed, patterns)
        dataset_keys[plan.dataset_id] = features_key = _hash({**identity, "features": FEATURE_SET})
        finders = []
        for setting in settings:
            if setting.neural and setting.spec["fold"] != plan.fold:
                continue
            source = str(networks[setting.model_id].path) if setting.neural else json.dumps(dict(setting.spec))
            finder = _file_digest(networks[setting.model_id].path) if setting.neural else dict(setting.spec)
            scored = setting.scored_patterns(patterns)
            key = _hash({**identity, "finder": [setting.model_id, finder, scored], "tolerance": TOLERANCE_DEG})
            pairs.append(key)
            if key not in results:
                finders.append((key, setting.model_id, source, scored))
        if finders or features_key not in results:
            tasks.append(_Task(plan, seed, patterns, "" if features_key in results else features_key, tuple(finders)))
    pending = sum(len(task.finders) for task in tasks)
    _measure(
        tasks, results, results_path, jobs, Progress("xrdzoo", len(pairs), len(pairs) - pending, "pairs", progress)
    )

    records = [results[key] for key in pairs]
    described = {plan.dataset_id: results[dataset_keys[plan.dataset_id]] for plan in plans}
    tables = _tables(settings, plans, networks, records, described, patterns)
    artifacts = {f"{s.model_id}.onnx": networks[s.model_id].path for s in settings if s.neural}
    _write_bundle(out, _manifest(settings, plans, patterns, seed), tables, settings, artifacts)
    return Generated(
        models=len(settings),
        datasets=len(plans),
        interactions=len(records),
        measured=pending,
        reused=len(pairs) - pending,
        trained=trained,
        seconds=time.monotonic() - started,
    )


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:24]


def _train(
    settings: Sequence[FinderSetting],
    structures: Sequence[Structure],
    folds: Mapping[str, int],
    folder: Path,
    seed: int,
    jobs: int,
    progress: TextIO | None,
) -> tuple[dict[str, _Network], int]:
    """Train the CNNs whose network (keyed by all that determines it) is not in `folder` yet."""
    networks: dict[str, _Network] = {}
    missing: dict[str, tuple[FinderSetting, list[Structure], Path]] = {}
    for setting in settings:
        if not setting.neural:
            continue
        seen = [s for s in structures if folds[s.name] != setting.spec["fold"]]
        identity = {
            "model": [setting.model_id, dict(setting.spec)],
            "structures": [[s.name, s.digest] for s in seen],
            "seed": seed,
            "versions": [SIMULATOR, torch.__version__, np.__version__],
        }
        path = folder / f"{setting.model_id}-{_hash(identity)}.onnx"
        sidecar = path.with_suffix(".json")
        if path.exists() and sidecar.exists():
            record = json.loads(sidecar.read_text())
            networks[setting.model_id] = _Network(
                path, float(record["train_seconds"]), float(record["threshold"]), list(record["trained_on"])
            )
        else:
            missing[setting.model_id] = (setting, seen, path)
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        with worker_pool(jobs, _init_worker) as pool:
            futures = {pool.submit(train_cnn, s, seen, seed): model_id for model_id, (s, seen, _) in missing.items()}
            for future in as_completed(futures):
                model_id = futures[future]
                _, seen, path = missing[model_id]
                data, threshold, seconds = future.result()
                record = {"train_seconds": seconds, "threshold": threshold, "trained_on": [s.name for s in seen]}
                _atomic_write(path, data)
                _atomic_write(path.with_suffix(".json"), json.dumps(record).encode())
                networks[model_id] = _Network(path, seconds, threshold, record["trained_on"])
                if progress:
                    print(f"xrdzoo: trained {model_id} in {seconds:.0f} s", file=progress, flush=True)
    return networks, len(missing)


def _atomic_write(path: Path, data: bytes) -> None:
    staging = path.with_name(f".{path.name}-{uuid.uuid4().hex}")
    staging.write_bytes(data)
    os.replace(staging, path)


def _measure(tasks: list[_Task], results: dict[str, dict[str, Any]], path: Path, jobs: int, progress: Progress) -> None:
    """Run the tasks on `jobs` long-lived worker processes, appending each result as it finishes."""
    if not tasks:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with path.open("a") as log:
        if torn:
            log.write("\n")  # end the line an interrupted run left half-written, so the next one is whole
        with worker_pool(jobs, _init_worker) as pool:
            for future in as_completed([pool.submit(_run, task) for task in tasks]):
                records = future.result()
                for record in records:
                    results[record["key"]] = record
                    log.write(json.dumps(record, sort_keys=True) + "\n")
                log.flush()
                progress.step(sum(record["kind"] == "pair" for record in records))


def _manifest(settings: list[FinderSetting], plans: list[DatasetPlan], patterns: int, seed: int) -> dict[str, Any]:
    families = ", ".join(
        f"{sum(s.family == f for s in settings)} {f}" for f in ("find_peaks", "derivative", "cwt", "cnn")
    )
    structures = len({plan.structure.name for plan in plans})
    return {
        "name": "xrdzoo",
        "description": (
            f"{len(settings)} powder XRD peak finders ({families}) measured on {len(plans)} datasets of "
            f"{patterns} simulated patterns each ({structures} crystal structures under varied radiation, 2θ "
            "range and step, counting noise, background, broadening and zero shift; seed "
            f"{seed}). score: mean peak F1, found and true peaks matched one-to-one within "
            f"±{TOLERANCE_DEG:g}° 2θ; position_error: mean |Δ2θ| of matched peaks. Wavelet (cwt) finders are "
            f"scored on the first {CWT_PATTERNS} patterns of each dataset. A CNN is scored only on "
            "datasets of structures outside its training folds. dataset_features/xrd.csv holds "
            f"modsnet.features.xrd {FEATURE_SET} of each dataset's patterns. Every finder runs from "
            "artifacts/ with modsnet.models.peaks.load_finder."
        ),
        "modality": "xrd",
        "task": "peak_finding",
        "metric": "peak_f1",
        "higher_is_better": True,
        "version": 1,
        "source": (
            f"Simulated and measured by modsnet.offline.zoo.xrd (numpy {np.__version__}, scipy {scipy.__version__}, "
            f"torch {torch.__version__}). Crystal structures and X-ray structure factors: Dans_Diffraction "
            f"{_DANS_VERSION} (https://github.com/DanPorter/Dans_Diffraction, Apache-2.0), whose structure "
            "files come mostly from the American Mineralogist Crystal Structure Database."
        ),
    }


def _tables(
    settings: list[FinderSetting],
    plans: list[DatasetPlan],
    networks: Mapping[str, _Network],
    records: list[dict[str, Any]],
    described: Mapping[str, dict[str, Any]],
    patterns: int,
) -> dict[str, pd.DataFrame]:
    """models.csv, datasets.csv, interactions.csv and the feature table, as data frames."""
    models = []
    for s in settings:
        network = networks.get(s.model_id)
        models.append(
            {
                "model_id": s.model_id,
                "family": s.family,
                "kind": "neural" if s.neural else "classical",
                "params": json.dumps(dict(s.spec), sort_keys=True),
                "artifact": f"{s.model_id}.onnx" if s.neural else f"{s.model_id}.json",
                "fold": s.spec["fold"] if s.neural else None,
                "training_conditions": s.spec["conditions"] if s.neural else "",
                "trained_on_structures": ";".join(network.trained_on) if network else "",
                "n_parameters": _parameters(s) if s.neural else None,
                "threshold": network.threshold if network else None,
                "scored_patterns": s.scored_patterns(patterns),
            }
        )
    datasets, features = [], []
    for plan in plans:
        c = plan.conditions
        datasets.append(
            {
                "dataset_id": plan.dataset_id,
                "structure": plan.structure.name,
                "formula": plan.structure.formula,
                "structure_file": plan.structure.file,
                "radiation": f"{c.source.capitalize()} Ka1",
                "wavelength": c.wavelength,
                "two_theta_min": c.two_theta_min,
                "two_theta_max": c.two_theta_max,
                "step": c.step,
                "n_points": c.n_points,
                "peak_counts": c.peak_counts,
                "noise_level": 1 / math.sqrt(c.peak_counts),  # Poisson σ at the tallest peak, relative to it
                "background": c.background,
                "background_level": c.background_level,
                "broadening": c.broadening,
                "lorentz_fraction": c.lorentz_fraction,
                "zero_shift": c.zero_shift,
                "n_patterns": patterns,
                "mean_true_peaks": described[plan.dataset_id]["true_peaks"],
                "fold": plan.fold,
            }
        )
        features.append({"dataset_id": plan.dataset_id, **described[plan.dataset_id]["features"]})
    interactions = pd.DataFrame(records)
    interactions["train_seconds"] = [
        networks[m].train_seconds if m in networks else 0.0 for m in interactions["model_id"]
    ]
    columns = ["model_id", "dataset_id", "score", "precision", "recall", "position_error"]
    interactions = interactions[[*columns, "inference_seconds", "train_seconds"]]
    models_table = pd.DataFrame(models)
    for column in ("fold", "n_parameters"):
        models_table[column] = models_table[column].astype("Int64")
    return {
        "models.csv": models_table.sort_values("model_id"),
        "datasets.csv": pd.DataFrame(datasets).sort_values("dataset_id"),
        "interactions.csv": interactions.sort_values(["model_id", "dataset_id"]),
        "dataset_features/xrd.csv": pd.DataFrame(features, columns=["dataset_id", *FEATURE_NAMES]).sort_values(
            "dataset_id"
        ),
    }


def _parameters(setting: FinderSetting) -> int:
    spec = setting.spec
    return sum(p.numel() for p in _Detector(spec["channels"], spec["layers"], spec["kernel"]).parameters())


def _write_bundle(
    out: Path,
    manifest: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    settings: list[FinderSetting],
    networks: Mapping[str, Path],
) -> None:
    """Write the bundle beside `out`, then swap it in: a reader sees the old library or the new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        staging.chmod(0o755)
        (staging / "library.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False, width=100))
        for relative, table in tables.items():
            path = staging / relative
            path.parent.mkdir(exist_ok=True)
            table.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
        artifacts = staging / "artifacts"
        artifacts.mkdir()
        for setting in settings:
            if not setting.neural:
                (artifacts / f"{setting.model_id}.json").write_text(
                    json.dumps(dict(setting.spec), sort_keys=True) + "\n"
                )
        for name, path in networks.items():
            shutil.copyfile(path, artifacts / name)
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train and measure (or resume), then write the bundle."""
    parser = argparse.ArgumentParser(prog="python -m modsnet.offline.zoo.xrd", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced atomically)")
    parser.add_argument("--work", type=Path, required=True, help="folder for simulations, networks and results")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of conditions, patterns, folds and training")
    parser.add_argument("--structures", nargs="+", help="only these structures (names), for a smoke run")
    parser.add_argument("--conditions", type=int, default=CONDITIONS_PER_STRUCTURE, help="condition sets per structure")
    parser.add_argument("--patterns", type=int, default=PATTERNS, help="patterns per dataset")
    parser.add_argument("--models", nargs="+", help="only these model ids, for a smoke run")
    args = parser.parse_args(argv)
    done = generate(
        args.out,
        args.work,
        jobs=args.jobs,
        seed=args.seed,
        structures=args.structures,
        conditions=args.conditions,
        patterns=args.patterns,
        models=args.models,
    )
    print(
        f"xrdzoo: {done.models} models, {done.datasets} datasets, {done.interactions} interactions "
        f"({done.measured} measured, {done.reused} reused, {done.trained} networks trained) "
        f"in {done.seconds:.0f} s -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
