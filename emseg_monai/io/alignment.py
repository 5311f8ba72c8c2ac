"""How far consecutive sections of a (Z, Y, X) stack are shifted against each other in Y and X.

Serial sections are cut, then imaged one by one and registered afterwards; what the registration
leaves is a shift of each section against its neighbours. Block-face stacks (FIB-SEM, SBF-SEM) have
almost none. ``section_shifts`` measures it by phase correlation (the peak of the normalised cross
power spectrum) of central crops of up to ``PAIRS`` neighbouring-slice pairs, each crop scaled to
mean 0 and variance 1 and tapered by a Hann window; the answer is in whole pixels.

Measured (docs/results.md, "A rough serial-section stack"; median / upper quartile, px): EPFL
0.0 / 0.2; kept at every 4th slice 1.0 / 1.4, every 8th 2.2 / 2.9 (what the sections' own content
moves; one false peak of 70.9 among 20 pairs); the rough proxy (``benchmarks/generalisation.py
--stacks epfl8rough``, residual shifts of std 6 px per section) 12.5 / 21.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PAIRS = 48  # neighbouring-slice pairs measured at most, spread over the stack
MISALIGNED_PX = 3.0  # upper shift quartile above this many SCM pixels: no smoothing along Z (docs/results.md)
CROP = 512  # central crop of each slice, pixels (Y and X)


def section_shifts(volume: Any, pairs: int = PAIRS, crop: int = CROP) -> np.ndarray:
    """Shift magnitudes (P,) float64, in pixels, between slices z and z + 1 of up to ``pairs`` pairs.

    ``volume``: any (Z, Y, X) array-like whose indexing returns numpy arrays (``io.open_volume``);
    only the central crops of the sampled slices are read. Fewer than 2 slices: an empty array. A
    flat slice (no texture) gives no reliable peak: its pairs are left out.
    """
    n = int(volume.shape[0])
    if n < 2:
        return np.zeros(0)
    starts = np.unique(np.linspace(0, n - 2, min(pairs, n - 1)).round().astype(int))
    height, width = (int(s) for s in volume.shape[1:])
    y0, x0 = max(0, (height - crop) // 2), max(0, (width - crop) // 2)
    box = (slice(y0, y0 + crop), slice(x0, x0 + crop))
    window = np.outer(np.hanning(min(crop, height)), np.hanning(min(crop, width)))
    shifts = []
    for z in starts:
        a, b = (_tapered(np.asarray(volume[int(z) + k, box[0], box[1]]), window) for k in (0, 1))
        if a is not None and b is not None:
            shifts.append(_shift(a, b))
    return np.asarray(shifts, dtype=np.float64)


def _tapered(image: np.ndarray, window: np.ndarray) -> np.ndarray | None:
    image = image.astype(np.float64)
    spread = image.std()
    return None if spread == 0 else (image - image.mean()) / spread * window


def _shift(a: np.ndarray, b: np.ndarray) -> float:
    """Length of the (dy, dx) that best maps ``b`` onto ``a`` (phase correlation, whole pixels)."""
    cross = np.fft.rfft2(a) * np.conj(np.fft.rfft2(b))
    cross /= np.abs(cross) + 1e-12
    corr = np.fft.irfft2(cross, s=a.shape)
    peak = np.unravel_index(int(np.argmax(corr)), corr.shape)
    dy, dx = (p if p <= size // 2 else p - size for p, size in zip(peak, corr.shape))
    return float(np.hypot(dy, dx))


def shift_limit(scm_downsample: float) -> float:
    """Image pixels of shift above which sections count as not lining up: ``MISALIGNED_PX`` at the
    SCM's resolution (6 at downsample 2). Training runs and later stacks use the same rule."""
    return MISALIGNED_PX * float(scm_downsample)


def upper_shift_quartile(volume: Any) -> float:
    """The 75th percentile of ``section_shifts(volume)``, in pixels (0.0 where nothing was measured):
    a quarter of the measured neighbouring-section pairs are shifted by more than this."""
    shifts = section_shifts(volume)
    return float(np.percentile(shifts, 75)) if shifts.size else 0.0
