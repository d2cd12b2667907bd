"""Peak finders for powder diffraction scans: the runnable models of XRDZoo, and how they are scored.

A finder maps a scan (2θ in degrees, intensities) to the 2θ positions of the peaks it sees. Classical
finders are built from a JSON spec, so a library can list hundreds of parameter settings as small files;
neural finders are ONNX files whose metadata says how to feed them. Every finder scales the intensities
itself (minimum to 0, maximum to 1, after any background removal; thresholds relative either to that
maximum or to the counting noise), so one spec means the same on a scan of 100 counts and of a million.
`load_finder` builds either kind from what the storage layer hands back. This module stays light (numpy,
scipy, onnxruntime): `modsnet run` loads it, not the training code.

Spec kinds (keys and defaults in `SPEC_DEFAULTS`):
- `find_peaks`: optional rolling-minimum background removal (`background`, window in degrees, 0 = off),
  optional smoothing (`smooth`: none | savgol | gaussian, `smooth_points`: window or σ in points), then
  `scipy.signal.find_peaks` with a prominence of `prominence` × (1 if `relative_to` is "max", the noise σ
  of the unsmoothed scan if "noise") and a minimum width of `min_width` points (0 = any);
- `derivative`: down-going zero crossings of the first derivative of the Gaussian-smoothed scan
  (`smooth_points` = σ in points) whose curvature (minus the second derivative) is at least `curvature` ×
  (its maximum, or its noise σ);
- `cwt`: `scipy.signal.find_peaks_cwt` with `widths` (points), `min_snr` and `noise_perc`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from scipy import ndimage, signal

__all__ = [
    "METADATA_KEY",
    "SPEC_DEFAULTS",
    "ClassicalFinder",
    "NeuralFinder",
    "PeakFinder",
    "PeakMatch",
    "f1_at_tolerance",
    "heatmap_peaks",
    "load_finder",
    "match_peaks",
    "mean_position_error",
    "neural_input",
    "refine_maxima",
]

METADATA_KEY = "modsnet.peak_finder"
"""The ONNX metadata entry (JSON) that tells `NeuralFinder` its grid step, threshold and spacing."""

SPEC_DEFAULTS: dict[str, dict[str, Any]] = {
    "find_peaks": {
        "background": 0.0,
        "smooth": "none",
        "smooth_points": 0,
        "prominence": 0.02,
        "relative_to": "max",
        "min_width": 0.0,
    },
    "derivative": {"smooth_points": 2.0, "curvature": 0.01, "relative_to": "max"},
    "cwt": {"widths": [1, 2, 4, 8], "min_snr": 1.0, "noise_perc": 10.0},
}
"""Every key a spec of each kind may hold, with the value a missing key takes."""

_MIN_POINTS = 5  # fewer points hold no peak worth a neighbour on each side


class PeakFinder(Protocol):
    """Anything that finds peaks: 2θ (degrees, ascending) and intensities in, peak 2θ positions out."""

    def find(self, two_theta: np.ndarray, intensity: np.ndarray) -> np.ndarray: ...


# ----------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class PeakMatch:
    """How found peaks compare with the true ones at a tolerance: one-to-one matches, F1 and position error."""

    found: int
    true: int
    matched: int
    position_error: float  # mean |Δ2θ| of matched pairs, degrees; NaN when nothing matched

    @property
    def precision(self) -> float:
        return self.matched / self.found if self.found else float(not self.true)

    @property
    def recall(self) -> float:
        return self.matched / self.true if self.true else float(not self.found)

    @property
    def f1(self) -> float:
        """2·matched / (found + true); 1 when both are empty (nothing to find, nothing claimed)."""
        total = self.found + self.true
        return 2 * self.matched / total if total else 1.0


def match_peaks(found: np.ndarray, true: np.ndarray, tol_deg: float) -> PeakMatch:
    """Match found to true peaks one-to-one within `tol_deg`, as many pairs as possible.

    On sorted positions a two-pointer walk gives a maximum matching in 1-D; peaks with no partner within
    the tolerance are dropped first (vectorised), so a finder that reports thousands of noise spikes costs
    little more to score than one that reports ten.
    """
    f = np.sort(np.asarray(found, dtype=float).ravel())
    t = np.sort(np.asarray(true, dtype=float).ravel())
    if not len(f) or not len(t):
        return PeakMatch(len(f), len(t), 0, math.nan)
    fc, tc = f[_has_partner(f, t, tol_deg)].tolist(), t[_has_partner(t, f, tol_deg)].tolist()
    i = j = matched = 0
    error = 0.0
    while i < len(fc) and j < len(tc):
        gap = fc[i] - tc[j]
        if abs(gap) <= tol_deg:
            matched += 1
            error += abs(gap)
            i += 1
            j += 1
        elif gap < 0:
            i += 1
        else:
            j += 1
    return PeakMatch(len(f), len(t), matched, error / matched if matched else math.nan)


def _has_partner(a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    """Which sorted `a` have a sorted `b` within `tol`."""
    k = np.searchsorted(b, a)
    left = np.abs(a - b[np.clip(k - 1, 0, len(b) - 1)])
    right = np.abs(b[np.clip(k, 0, len(b) - 1)] - a)
    return np.minimum(left, right) <= tol


def f1_at_tolerance(found: np.ndarray, true: np.ndarray, tol_deg: float = 0.1) -> float:
    """Peak F1 with found and true positions matched one-to-one within ±`tol_deg` degrees 2θ."""
    return match_peaks(found, true, tol_deg).f1


def mean_position_error(found: np.ndarray, true: np.ndarray, tol_deg: float = 0.1) -> float:
    """Mean |Δ2θ| (degrees) of the matched pairs; NaN when no peak matched."""
    return match_peaks(found, true, tol_deg).position_error


# ----------------------------------------------------------------------------------------------- classical


def _finite_sorted(two_theta: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(two_theta, dtype=float).ravel()
    y = np.asarray(intensity, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{x.size} 2θ positions but {y.size} intensities")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) > 1 and np.any(np.diff(x) < 0):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
    return x, y


def _noise_sigma(y: np.ndarray) -> float:
    """Noise σ from second differences (var = 6σ² for white noise), robust to peaks through the MAD."""
    second = y[:-2] - 2 * y[1:-1] + y[2:]
    return float(1.4826 * np.median(np.abs(second - np.median(second))) / math.sqrt(6))


def _scaled(y: np.ndarray) -> tuple[np.ndarray, float]:
    """Intensities scaled to 0..1 and the factor used, so thresholds mean the same on any count level."""
    low, span = float(y.min()), float(y.max() - y.min())
    if span <= 0:
        return np.zeros_like(y), 0.0
    return (y - low) / span, 1.0 / span


def refine_maxima(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sub-point peak positions (in points) from the vertex of a parabola through each maximum and its neighbours."""
    index = np.asarray(index, dtype=int)
    inner = (index > 0) & (index < len(values) - 1)
    position = index.astype(float)
    k = index[inner]
    left, mid, right = values[k - 1], values[k], values[k + 1]
    bend = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(bend < 0, 0.5 * (left - right) / bend, 0.0)
    position[inner] += np.clip(np.nan_to_num(offset), -0.5, 0.5)
    return position


def _to_degrees(two_theta: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.sort(np.interp(points, np.arange(len(two_theta)), two_theta))


def _rolling_background(y: np.ndarray, window: int) -> np.ndarray:
    """Rolling-minimum background (a morphological opening), smoothed by a moving mean, never above the scan."""
    opened = ndimage.maximum_filter1d(ndimage.minimum_filter1d(y, window, mode="nearest"), window, mode="nearest")
    return np.minimum(ndimage.uniform_filter1d(opened, window, mode="nearest"), y)


@dataclass(frozen=True)
class ClassicalFinder:
    """A classical detector from a spec (see the module docstring); `spec` holds every key, defaults filled."""

    spec: Mapping[str, Any]

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ClassicalFinder:
        """Check a spec (kind and keys known, values sane) and fill in the defaults."""
        kind = spec.get("kind")
        if kind not in SPEC_DEFAULTS:
            raise ValueError(f"unknown peak finder kind {kind!r}; known: {sorted(SPEC_DEFAULTS)}")
        unknown = set(spec) - set(SPEC_DEFAULTS[kind]) - {"kind"}
        if unknown:
            raise ValueError(f"{kind} spec: unknown keys {sorted(unknown)}; known: {sorted(SPEC_DEFAULTS[kind])}")
        full = {"kind": kind, **SPEC_DEFAULTS[kind], **spec}
        if full.get("relative_to", "max") not in ("max", "noise"):
            raise ValueError(f"{kind} spec: relative_to must be 'max' or 'noise', not {full['relative_to']!r}")
        if kind == "find_peaks" and full["smooth"] not in ("none", "savgol", "gaussian"):
            raise ValueError(f"find_peaks spec: smooth must be none, savgol or gaussian, not {full['smooth']!r}")
        if kind == "cwt" and (not full["widths"] or min(full["widths"]) <= 0):
            raise ValueError("cwt spec: widths must be a non-empty list of positive numbers")
        return cls(full)

    def find(self, two_theta: np.ndarray, intensity: np.ndarray) -> np.ndarray:
        """Peak positions in degrees 2θ, ascending."""
        x, y = _finite_sorted(two_theta, intensity)
        if len(x) < _MIN_POINTS:
            return np.empty(0)
        method = {"find_peaks": self._find_peaks, "derivative": self._derivative, "cwt": self._cwt}
        return method[self.spec["kind"]](x, y)

    def _find_peaks(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        spec = self.spec
        if spec["background"] > 0:
            step = float(np.median(np.diff(x)))
            window = max(3, round(spec["background"] / step)) if step > 0 else 3
            y = y - _rolling_background(y, window)
        sigma = _noise_sigma(y) if spec["relative_to"] == "noise" else 0.0  # of the counts, before smoothing
        points = spec["smooth_points"]
        if spec["smooth"] == "savgol" and points >= 3:
            window = min(int(points), len(y)) // 2 * 2 + 1  # odd, and no longer than the scan
            window = window if window <= len(y) else window - 2
            y = signal.savgol_filter(y, window, min(2, window - 1), mode="nearest")
        elif spec["smooth"] == "gaussian" and points > 0:
            y = ndimage.gaussian_filter1d(y, points, mode="nearest")
        scaled, factor = _scaled(y)
        if factor == 0:
            return np.empty(0)
        unit = 1.0 if spec["relative_to"] == "max" else sigma * factor
        options: dict[str, Any] = {"prominence": spec["prominence"] * unit}
        if spec["min_width"] > 0:
            options["width"] = spec["min_width"]
        index, _ = signal.find_peaks(scaled, **options)
        return _to_degrees(x, refine_maxima(scaled, index))

    def _derivative(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        spec = self.spec
        scaled, factor = _scaled(y)
        if factor == 0:
            return np.empty(0)
        sigma = max(float(spec["smooth_points"]), 0.5)
        first = ndimage.gaussian_filter1d(scaled, sigma, order=1, mode="nearest")
        second = ndimage.gaussian_filter1d(scaled, sigma, order=2, mode="nearest")
        cross = np.nonzero((first[:-1] > 0) & (first[1:] <= 0))[0]
        curvature = -np.minimum(second[cross], second[cross + 1])
        if spec["relative_to"] == "max":
            unit = float(max(-second.min(), 0.0))
        else:
            unit = float(1.4826 * np.median(np.abs(second - np.median(second))))
        keep = curvature >= spec["curvature"] * unit
        cross = cross[keep & (curvature > 0)]
        fraction = first[cross] / (first[cross] - first[cross + 1])  # linear zero crossing between the points
        return _to_degrees(x, cross + fraction)

    def _cwt(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        spec = self.spec
        scaled, factor = _scaled(y)
        if factor == 0:
            return np.empty(0)
        widths = np.asarray(spec["widths"], dtype=float)
        index = signal.find_peaks_cwt(scaled, widths, min_snr=spec["min_snr"], noise_perc=spec["noise_perc"])
        return _to_degrees(x, refine_maxima(scaled, np.asarray(index, dtype=int)))


# ----------------------------------------------------------------------------------------------- neural


def neural_input(two_theta: np.ndarray, intensity: np.ndarray, grid_step: float) -> tuple[np.ndarray, np.ndarray]:
    """The uniform 2θ grid a neural finder works on and its input there (float32, 0..1).

    Scans come at any step; the network was trained at one, so the scan is linearly interpolated onto a grid
    of `grid_step` degrees. The square root of the counts (less the minimum) levels Poisson noise across
    the range of intensities; dividing by its maximum makes the input independent of counting time.
    Training and inference both call this, so the network sees the same transformation in both.
    """
    x, y = _finite_sorted(two_theta, intensity)
    if len(x) < 2 or x[-1] <= x[0]:
        return np.empty(0), np.empty(0, dtype=np.float32)
    grid = x[0] + grid_step * np.arange(math.floor((x[-1] - x[0]) / grid_step) + 1)
    values = np.sqrt(np.clip(np.interp(grid, x, y) - y.min(), 0.0, None))
    top = float(values.max())
    return grid, (values / top if top > 0 else values).astype(np.float32)


class NeuralFinder:
    """A 1-D convolutional detector exported to ONNX: input (1, 1, N) scaled counts, output (1, 1, N) peak
    probabilities on the same grid; peaks are the local maxima of the probabilities above a threshold.

    `model` is the file or its bytes. Its metadata entry `METADATA_KEY` (JSON) holds `grid_step` (degrees),
    `threshold` and `min_separation` (degrees), with whatever the generator recorded about its training.
    """

    def __init__(self, model: bytes | str | os.PathLike[str], *, threads: int = 1, label: str = ""):
        label = label or str(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            source = model if isinstance(model, bytes) else str(model)
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...) are not public
            raise ValueError(f"{label}: not an ONNX model ({str(exc).splitlines()[0][:200]})") from exc
        stored = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if stored is None:
            raise ValueError(f"{label}: not a ModsNet peak finder (no {METADATA_KEY!r} metadata)")
        self.metadata: dict[str, Any] = json.loads(stored)
        self.grid_step = float(self.metadata["grid_step"])
        self.threshold = float(self.metadata["threshold"])
        self.min_separation = float(self.metadata.get("min_separation", 0.0))
        self._input = self.session.get_inputs()[0].name

    def heatmap(self, two_theta: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The grid (degrees) and the network's peak probability at each grid point: its confidence."""
        grid, values = neural_input(two_theta, intensity, self.grid_step)
        if len(grid) < _MIN_POINTS:
            return grid, np.zeros(len(grid), dtype=np.float32)
        (probability,) = self.session.run(None, {self._input: values[None, None, :]})
        return grid, probability.reshape(-1)

    def find(self, two_theta: np.ndarray, intensity: np.ndarray) -> np.ndarray:
        """Peak positions in degrees 2θ, ascending."""
        grid, probability = self.heatmap(two_theta, intensity)
        return heatmap_peaks(grid, probability, self.threshold, self.min_separation)


def heatmap_peaks(grid: np.ndarray, probability: np.ndarray, threshold: float, min_separation: float) -> np.ndarray:
    """Peaks of a neural finder's output: maxima above `threshold`, `min_separation` degrees apart, refined."""
    if len(grid) < 2:
        return np.empty(0)
    distance = max(1, round(min_separation / float(grid[1] - grid[0])))
    index, _ = signal.find_peaks(probability, height=threshold, distance=distance)
    return _to_degrees(grid, refine_maxima(probability, index))


# ----------------------------------------------------------------------------------------------- loading


def load_finder(source: Mapping[str, Any] | bytes | str | os.PathLike[str]) -> PeakFinder:
    """A runnable finder from a spec dict, or from a spec (JSON) or neural finder (ONNX) file or its bytes.

    A file is taken by its suffix (.json, .onnx); one without (a content-addressed blob) and bytes by their
    content: a JSON object is a spec, anything else must be an ONNX model.
    """
    if isinstance(source, Mapping):
        return ClassicalFinder.from_spec(source)
    if isinstance(source, bytes):
        data, label = source, "peak finder"
    else:
        path = Path(source)
        if path.suffix.lower() == ".onnx":
            return NeuralFinder(path)
        data, label = path.read_bytes(), str(path)
        if path.suffix.lower() == ".json":
            return _spec_finder(data, label)
    return _spec_finder(data, label) if data.lstrip()[:1] == b"{" else NeuralFinder(data, label=label)


def _spec_finder(data: bytes, label: str) -> ClassicalFinder:
    try:
        spec = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{label}: not a JSON peak finder spec ({exc})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{label}: a peak finder spec must be a JSON object")
    return ClassicalFinder.from_spec(spec)
