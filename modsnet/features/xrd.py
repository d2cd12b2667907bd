"""X-ray diffraction scans: 2θ range and step, counting statistics, noise, background, peaks and wavelength.

What a peak finder's accuracy depends on is how the pattern was measured (range, step, counting time,
hence noise), what lies under the peaks (background) and what the peaks are like (how many, how broad);
these features describe exactly that, per scan, and take the median over a bounded sample of scans when a
dataset holds several. The same function describes uploads and library datasets (simulated patterns
included), so the two are comparable by construction; any change to a definition must bump `FEATURE_SET`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, signal

__all__ = ["FEATURE_NAMES", "FEATURE_SET", "MIN_POINTS", "SAMPLE_SCANS", "Scan", "xrd_features"]

FEATURE_SET = "xrd/v1"
"""Version of the feature vector: bump it whenever a feature's definition changes."""

FEATURE_NAMES: tuple[str, ...] = (
    "log_rows",
    "two_theta_min",
    "two_theta_max",
    "log_points",
    "step",
    "step_irregularity",
    "log_max_intensity",
    "log_median_intensity",
    "share_zero",
    "noise_level",
    "log_poisson_dispersion",
    "background_share",
    "background_slope",
    "peak_density",
    "median_peak_width",
    "peak_width_spread",
    "log_peak_to_background",
    "wavelength",
    "wavelength_known",
)
"""The keys of `xrd_features`, in a fixed order."""

SAMPLE_SCANS = 64
"""Scans described per dataset; loaders parse no more than this many."""
MIN_POINTS = 10
"""Fewest finite points a scan may have: fewer have no noise, background or peak to speak of."""

_BACKGROUND_DEGREES = 2.0  # the rolling-minimum window: wider than a powder peak, narrower than a background swell
_PROMINENCE_SIGMAS = 5.0  # a peak must rise this many noise standard deviations above its surroundings
_MIN_PROMINENCE_SHARE = 0.01  # ... and 1% of the tallest one, so counting noise on a huge peak is not a peak
_MAX_DISPERSION = 6.0  # |log10| clip: scaled or processed intensities can be far from counts
_MAX_SLOPE = 10.0  # a background near zero at one end makes the relative slope explode


@dataclass(frozen=True)
class Scan:
    """One diffraction pattern: intensities against 2θ (degrees, ascending) and what the file says about it.

    A 2-D map (a reciprocal space map) arrives here integrated over its second axis, so every scan is a
    1-D pattern; `metadata` says what it was (`scan_type`, `format`, ...).
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    wavelength: float | None = None  # Kα1 in ångström, where the file states it
    metadata: Mapping[str, str] = field(default_factory=dict)


def xrd_features(scans: Sequence[Scan], *, n_scans: int = 0, seed: int = 0) -> dict[str, float]:
    """Features of one or more scans, keyed by `FEATURE_NAMES`: all finite, deterministic per seed.

    `n_scans` is the dataset's size when `scans` is a sample of it (default: the number of scans given).
    Per-scan values are combined by their median over at most 64 seeded scans. `wavelength` is the stated
    Kα1 (Å), 0 where no file states one, with `wavelength_known` the share of scans that state it.
    """
    if not scans:
        raise ValueError("xrd_features needs at least one scan")
    if any(np.isfinite(scan.intensity).sum() < MIN_POINTS for scan in scans):
        raise ValueError(f"every scan needs at least {MIN_POINTS} finite intensities")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(scans), size=min(len(scans), SAMPLE_SCANS), replace=False))
    per_scan = [_scan_features(scans[i]) for i in chosen]
    stated = [scans[i].wavelength for i in chosen if scans[i].wavelength]
    features = {name: float(np.median([f[name] for f in per_scan])) for name in per_scan[0]}
    features |= {
        "log_rows": math.log10(max(n_scans, len(scans))),
        "wavelength": float(np.median(stated)) if stated else 0.0,
        "wavelength_known": len(stated) / len(chosen),
    }
    return {key: float(features[key]) for key in FEATURE_NAMES}


def _scan_features(scan: Scan) -> dict[str, float]:
    x = np.asarray(scan.two_theta, dtype=float)
    y = np.clip(np.asarray(scan.intensity, dtype=float), 0.0, None)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    steps = np.diff(x)
    step = float(np.median(steps)) if len(steps) else 0.0
    span = float(x[-1] - x[0]) if len(x) > 1 else 0.0
    median = float(np.median(y))
    sigma = _noise_sigma(y)
    # A window wider than twice the scan is the whole scan from every point (capped: a tiny step would overflow).
    window = int(min(2 * len(y) + 1, max(3.0, round(min(_BACKGROUND_DEGREES / step, 1e9))))) if step > 0 else 3
    background = _background(y, window)
    peaks, widths = _peaks(y - background, sigma)
    width_degrees = widths * step
    reference = max(float(np.median(background)), sigma, 1e-12)
    return {
        "two_theta_min": float(x[0]),
        "two_theta_max": float(x[-1]),
        "log_points": math.log10(len(x)),
        "step": step,
        "step_irregularity": float(np.std(steps) / step) if step > 0 else 0.0,
        "log_max_intensity": math.log10(1 + float(y.max())),
        "log_median_intensity": math.log10(1 + median),
        "share_zero": float((y == 0).mean()),
        "noise_level": sigma / median if median > 0 else 0.0,
        "log_poisson_dispersion": float(
            np.clip(math.log10(max(sigma**2, 1e-12) / max(median, 1e-12)), -_MAX_DISPERSION, _MAX_DISPERSION)
        ),
        "background_share": float(background.sum() / y.sum()) if y.sum() > 0 else 0.0,
        "background_slope": _slope(background),
        "peak_density": len(peaks) / span if span > 0 else 0.0,
        "median_peak_width": float(np.median(width_degrees)) if len(peaks) else 0.0,
        "peak_width_spread": float(np.subtract(*np.percentile(width_degrees, [75, 25])) / np.median(width_degrees))
        if len(peaks) and np.median(width_degrees) > 0
        else 0.0,
        "log_peak_to_background": math.log10(1 + float((y - background).max()) / reference),
    }


def _noise_sigma(y: np.ndarray) -> float:
    """The noise standard deviation from second differences (var = 6σ² for white noise), robust to peaks (MAD)."""
    if len(y) < 3:
        return 0.0
    second = y[:-2] - 2 * y[1:-1] + y[2:]
    return float(1.4826 * np.median(np.abs(second - np.median(second))) / math.sqrt(6))


def _background(y: np.ndarray, window: int) -> np.ndarray:
    """A rolling-minimum (morphological opening) background, smoothed by a moving mean of the same window."""
    opened = ndimage.maximum_filter1d(ndimage.minimum_filter1d(y, window, mode="nearest"), window, mode="nearest")
    return np.minimum(ndimage.uniform_filter1d(opened, window, mode="nearest"), y)


def _peaks(signal_: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Peak positions and full widths at half prominence (in points) of the background-free signal."""
    if len(signal_) < 3 or signal_.max() <= 0:
        return np.array([], dtype=int), np.array([])
    prominence = max(_PROMINENCE_SIGMAS * sigma, _MIN_PROMINENCE_SHARE * float(signal_.max()))
    peaks, _ = signal.find_peaks(signal_, prominence=prominence)
    if not len(peaks):
        return peaks, np.array([])
    return peaks, signal.peak_widths(signal_, peaks, rel_height=0.5)[0]


def _slope(background: np.ndarray) -> float:
    """Background at the high-angle end minus the low-angle end (tenths of the scan), over its mean, clipped."""
    tenth = max(1, len(background) // 10)
    mean = float(background.mean())
    slope = float(background[-tenth:].mean() - background[:tenth].mean()) / mean if mean > 0 else 0.0
    return min(max(slope, -_MAX_SLOPE), _MAX_SLOPE)
