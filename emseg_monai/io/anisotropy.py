"""The Z/XY voxel ratio of a stack estimated from its image, for files that record no voxel size.

In a stack of isotropic voxels, neighbouring slices differ about as much as pixels one apart
within a slice; with sections k times as thick as the pixels are wide, they differ about as much
as pixels k apart. ``estimate_anisotropy`` compares the mean squared difference of neighbouring
slices with that of pixels d apart within the same slices (d = 1 .. ``max_lag``, along Y and X), on
central crops of up to 16 slice pairs, each slice scaled to mean 0 and variance 1 first (so that
section-to-section changes of brightness or contrast do not count), and returns the d, interpolated,
at which the two agree. Both are medians over the pairs, so that a few degraded slices (noise,
blur, a fold) do not move the estimate.

Measured on EPFL (5 nm isotropic FIB-SEM) kept at every k-th slice, k = 1, 2, 3, 4, 6, 8, 10, 16:
1.07, 1.95, 3.14, 4.00, 6.39, 7.96, 10.06, 16.62 (docs/results.md, "Voxel size from the image").
Sections that are misaligned, or cut with varying thickness, differ more than their thickness
alone makes them differ: the estimate then errs towards thicker sections, the safer side for MPP's
Z steps and the SCM. Texture that is not isotropic moves it too: the project's synthetic stacks,
whose background is smoothed 3x more in Y and X than in Z and which have degraded slices, read 1.0
to 6.5 (median 1.8). Only a clear anisotropy (``CLEARLY_ANISOTROPIC``) is acted on.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CLEARLY_ANISOTROPIC = 2.5  # below: read as isotropic (EPFL 1.07; EPFL every 3rd slice 3.14, where the SCM loses 3 Dice)
PAIRS = 16  # neighbouring-slice pairs sampled, spread over the stack
CROP = 512  # central crop of each slice, pixels (Y and X)
MAX_LAG = 64  # largest in-slice distance compared, pixels: estimates stop there ("at least 64")


def estimate_anisotropy(volume: Any, pairs: int = PAIRS, crop: int = CROP, max_lag: int = MAX_LAG) -> float | None:
    """Z spacing over XY pixel size, as the image shows it.

    Parameters
    ----------
    volume : array-like
        (Z, Y, X) stack, any numeric dtype; anything that slices like a numpy array (zarr arrays
        and ``io.open_volume``'s lazy volumes too: only ``2 * pairs`` central crops are read).
    pairs, crop, max_lag : int
        Slice pairs sampled, crop size and largest in-slice distance (pixels).

    Returns
    -------
    float or None
        The ratio (>= 1.0; stacks whose slices differ less than neighbouring pixels give 1.0; at
        most ``max_lag``), or None where the stack cannot tell: fewer than 2 slices, slices
        narrower than 16 pixels, or flat images.

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter
    >>> field = gaussian_filter(np.random.default_rng(0).normal(size=(96, 96, 96)), 4)
    >>> round(estimate_anisotropy(field[::6]))   # every 6th slice of an isotropic texture
    6
    """
    z, y, x = (int(s) for s in volume.shape)
    max_lag = min(int(max_lag), min(y, x) // 4)
    if z < 2 or max_lag < 4:
        return None
    y0, x0 = max(0, (y - crop) // 2), max(0, (x - crop) // 2)
    window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
    between, within = [], []
    for s in np.unique(np.linspace(0, z - 2, min(int(pairs), z - 1)).round().astype(int)):
        a, b = (_standardised(volume[int(i), window[0], window[1]]) for i in (s, s + 1))
        if a is None or b is None:
            continue
        between.append(np.mean((a - b) ** 2))
        within.append([_in_slice(a, d) for d in range(1, max_lag + 1)])
    if not between:
        return None
    d_z, d_xy = float(np.median(between)), np.median(np.asarray(within), axis=0)
    if d_z <= d_xy[0]:
        return 1.0
    above = np.nonzero(d_xy >= d_z)[0]
    if len(above) == 0:
        return float(max_lag)
    i = int(above[0])  # d_xy[i - 1] < d_z <= d_xy[i]: lags i and i + 1
    return float(i + (d_z - d_xy[i - 1]) / (d_xy[i] - d_xy[i - 1]))


def _standardised(image: Any) -> np.ndarray | None:
    image = np.asarray(image, np.float64)
    std = image.std()
    return None if not np.isfinite(std) or std <= 1e-9 else (image - image.mean()) / std


def _in_slice(image: np.ndarray, d: int) -> float:
    """Mean squared difference of pixels ``d`` apart along X and along Y (their mean)."""
    return 0.5 * float(np.mean((image[:, d:] - image[:, :-d]) ** 2) + np.mean((image[d:] - image[:-d]) ** 2))


def image_anisotropy(path: str | Path) -> float | None:
    """``estimate_anisotropy`` of the stack in ``path`` (any format ``io.open_volume`` reads).

    Computed once per file version (path, modification time, size); None when the file cannot be
    read or the stack cannot tell (see ``estimate_anisotropy``).
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return None
    return _estimate_file(str(path.resolve()), stat.st_mtime_ns, stat.st_size)  # a Zarr folder: its own times


@functools.lru_cache(maxsize=32)
def _estimate_file(path: str, mtime_ns: int, size: int) -> float | None:
    from emseg_monai.io.volumes import open_volume

    try:
        return estimate_anisotropy(open_volume(path))
    except Exception as exc:  # the estimate is a fallback: an unreadable file is reported where it is read
        logger.debug("no anisotropy estimate for %s: %s", path, exc)
        return None
