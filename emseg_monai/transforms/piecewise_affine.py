"""Random piecewise affine warp of 2D images, as MONAI array and dictionary transforms.

A regular ``rows x cols`` grid of control points (corners included) is jittered with normal
noise; the image is resampled piecewise-affinely over the Delaunay triangulation of the jittered
points so that the content at each grid point moves to its jittered position. The result equals
scikit-image's ``warp(image, PiecewiseAffineTransform.from_estimate(dst, src), order=1)``
(pixels outside the jittered mesh become 0), but is built from vectorised per-triangle
rasterisation plus one ``torch.nn.functional.grid_sample`` call, so it is much faster.
Points are (col, row) = (x, y) pairs, as in scikit-image.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, ensure_tuple_rep
from scipy.spatial import Delaunay, QhullError

from emseg_monai.errors import InputError

__all__ = ["RandPiecewiseAffine", "RandPiecewiseAffined", "control_grid", "piecewise_affine_warp"]

logger = logging.getLogger(__name__)

MODES = ("bilinear", "nearest")
_OUTSIDE = -4.0  # normalised coordinate well outside [-1, 1]: grid_sample reads 0 there
_EPS = 1e-6  # tolerance on barycentric coordinates: pixels on a shared edge go to either triangle


def _check_mode(mode) -> str:
    mode = getattr(mode, "value", mode)  # accept monai.utils.GridSampleMode members
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def _check_grid(grid) -> tuple[int, int]:
    try:
        rows, cols = (int(g) if float(g) == int(g) else None for g in ensure_tuple_rep(grid, 2))
    except (TypeError, ValueError):
        rows = cols = None
    if rows is None or cols is None or rows < 2 or cols < 2:
        raise InputError(f"grid must be (rows, cols) with both integers >= 2, got {grid!r}")
    return rows, cols


def _check_scale_range(scale_range) -> tuple[float, float]:
    try:
        low, high = (float(s) for s in scale_range)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not (0.0 <= low <= high < 0.5):
        raise InputError(f"scale_range must be (low, high) with 0 <= low <= high < 0.5, got {scale_range!r}")
    return low, high


def _check_image_shape(shape) -> tuple[int, int]:
    if len(shape) != 3 or shape[1] < 2 or shape[2] < 2:
        raise InputError(f"image must be 3D (C, H, W) with H, W >= 2, got shape {tuple(shape)}")
    return int(shape[1]), int(shape[2])


def _check_points(name: str, points) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 3:
        raise InputError(f"{name} must have shape (K, 2) with K >= 3, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} must hold finite values, got {arr.tolist()}")
    return arr


def control_grid(spatial_size: Sequence[int], grid: Sequence[int] | int = (4, 4)) -> np.ndarray:
    """Regular control-point grid spanning an image, corners included.

    Parameters
    ----------
    spatial_size : (H, W) ints
    grid : (rows, cols) ints >= 2, or one int for both

    Returns
    -------
    np.ndarray, float64, shape (rows * cols, 2)
        (col, row) points, row-major: ``linspace(0, W - 1, cols) x linspace(0, H - 1, rows)``.
    """
    rows, cols = _check_grid(grid)
    height, width = (int(s) for s in spatial_size)
    xx, yy = np.meshgrid(np.linspace(0, width - 1, cols), np.linspace(0, height - 1, rows))
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def _sampling_grid(src: np.ndarray, dst: np.ndarray, height: int, width: int, dtype) -> np.ndarray:
    """(2, H, W) normalised (x, y) input coordinates for every output pixel; _OUTSIDE off the mesh."""
    # scikit-image estimates the warp's transform from dst to src, so it triangulates dst.
    simplices = Delaunay(dst).simplices
    corners = np.concatenate([dst[simplices].transpose(0, 2, 1), np.ones((len(simplices), 1, 3))], axis=1)
    good = np.abs(np.linalg.det(corners)) > 1e-9  # columns of corners: homogeneous (x, y, 1) vertices
    if not good.all():  # degenerate triangles: their pixels lie on neighbouring triangles
        logger.debug("skipping %d degenerate triangle(s) of the dst mesh", int((~good).sum()))
    simplices, corners = simplices[good], corners[good]
    barys = np.linalg.inv(corners)  # barycentric coordinate i of triangle t = barys[t, i] @ (x, y, 1)
    norm = np.array([[2.0 / (width - 1)], [2.0 / (height - 1)]])
    affs = src[simplices].transpose(0, 2, 1) @ barys * norm  # dst (x, y, 1) -> normalised src (x, y) + 1
    affs[:, :, 2] -= 1.0
    row_lo = np.maximum(np.ceil(dst[simplices, 1].min(axis=1) - 1e-6), 0).astype(int)
    row_hi = np.minimum(np.floor(dst[simplices, 1].max(axis=1) + 1e-6), height - 1).astype(int)
    out = np.full((2, height, width), _OUTSIDE, dtype=dtype)
    index = np.int16 if width < 2**15 else np.int32  # narrow ints make the masks below ~3x faster
    all_cols = np.arange(width, dtype=index)
    for bary, aff, r0, r1 in zip(barys, affs, row_lo, row_hi):
        if r0 > r1:
            continue
        rows = np.arange(r0, r1 + 1, dtype=np.float64)
        # Inside <=> bary[i, 0] * x >= bound[i] for i = 0, 1, 2: one column interval per row.
        bound = -_EPS - bary[:, 2:3] - bary[:, 1:2] * rows
        lo, hi = np.zeros_like(rows), np.full_like(rows, width - 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            for slope, b in zip(bary[:, 0], bound):
                if slope > 0:
                    lo = np.maximum(lo, b / slope)
                elif slope < 0:
                    hi = np.minimum(hi, b / slope)
                else:  # edge opposite vertex i is horizontal: rows beyond it are outside
                    hi[b > 0] = -1.0
        lo, hi = np.ceil(lo).astype(index), np.floor(hi).astype(index)
        keep = lo <= hi
        if not keep.any():
            continue
        c0, c1 = int(lo[keep].min()), int(hi[keep].max())
        cols = all_cols[c0 : c1 + 1]
        inside = (cols >= lo[:, None]) & (cols <= hi[:, None])
        along = (aff[:, 0:1] * cols + aff[:, 2:3]).astype(dtype)[:, None, :]
        down = (aff[:, 1:2] * rows).astype(dtype)[:, :, None]
        np.copyto(out[:, r0 : r1 + 1, c0 : c1 + 1], along + down, where=inside)
    return out


def piecewise_affine_warp(image: NdarrayOrTensor, src, dst, mode: str = "bilinear") -> NdarrayOrTensor:
    """Warp ``image`` piecewise-affinely so that the content at ``src[k]`` moves to ``dst[k]``.

    Same result as ``skimage.transform.warp(image, T, order=1)`` per channel with
    ``T = PiecewiseAffineTransform.from_estimate(dst, src)``: output pixels are mapped to input
    coordinates through the Delaunay triangulation of ``dst``; output pixels outside that mesh,
    and samples outside the image, are 0.

    Parameters
    ----------
    image : np.ndarray or torch.Tensor (CPU or GPU, MetaTensor allowed), shape (C, H, W)
        Channel-first 2D image with H, W >= 2. Any real dtype; computed in float32 (float64 for
        float64 input), then cast back (rounded first for integer/bool dtypes).
    src, dst : array-like, float, shape (K, 2)
        Corresponding (col, row) points, K >= 3. Usually ``src = control_grid((H, W), grid)`` and
        ``dst`` its jittered copy, but any point pairs with a non-degenerate ``dst`` work.
    mode : {"bilinear", "nearest"}
        Interpolation; use "nearest" for label maps.

    Returns
    -------
    Same type, dtype and device as ``image``, shape (C, H, W); a MetaTensor keeps its meta.

    Examples
    --------
    >>> img = np.random.rand(1, 64, 80).astype(np.float32)
    >>> src = control_grid(img.shape[1:], (4, 4))
    >>> dst = src + np.random.normal(0, 2.0, src.shape)
    >>> piecewise_affine_warp(img, src, dst).shape
    (1, 64, 80)
    """
    mode = _check_mode(mode)
    height, width = _check_image_shape(image.shape)
    src, dst = _check_points("src", src), _check_points("dst", dst)
    if src.shape != dst.shape:
        raise InputError(f"src and dst must have the same shape, got {src.shape} and {dst.shape}")
    if isinstance(image, MetaTensor):
        img_t = image.as_tensor()
    elif isinstance(image, torch.Tensor):
        img_t = image
    else:
        img_t = torch.as_tensor(np.ascontiguousarray(image))
    work = torch.float64 if img_t.dtype == torch.float64 else torch.float32
    try:
        grid = _sampling_grid(src, dst, height, width, np.float64 if work == torch.float64 else np.float32)
    except QhullError as err:
        raise InputError(f"dst points cannot be triangulated (degenerate): {dst.tolist()}") from err
    grid_t = torch.from_numpy(grid).to(img_t.device).permute(1, 2, 0)[None]
    out = F.grid_sample(img_t[None].to(work), grid_t, mode=mode, padding_mode="zeros", align_corners=True)[0]
    if not img_t.dtype.is_floating_point:
        out = out.round()
    return convert_to_dst_type(out, image, dtype=image.dtype)[0]


class RandPiecewiseAffine(RandomizableTransform):
    """Random piecewise affine warp of a (C, H, W) image (numpy, torch or MetaTensor).

    With probability ``prob``, a ``grid = (rows, cols)`` control grid (see :func:`control_grid`)
    is jittered by normal noise of standard deviation ``scale * H`` along rows and ``scale * W``
    along columns, ``scale ~ U(scale_range)``, and the image is warped with
    :func:`piecewise_affine_warp`. Output has the input's type, dtype and device; when the warp
    is not applied the input object itself is returned, unchanged.

    Parameters
    ----------
    prob : float, probability of warping.
    grid : (rows, cols) ints >= 2 (or one int), control points including the corners.
    scale_range : (low, high) floats, ``0 <= low <= high < 0.5``: jitter std / image size.
    mode : {"bilinear", "nearest"}, default interpolation (``__call__`` may override it).

    After ``randomize((H, W))`` (called by ``__call__``), ``self.src`` / ``self.dst`` hold the
    (K, 2) float64 (col, row) control points drawn for that size and ``self.scale`` the scale.

    Examples
    --------
    >>> t = RandPiecewiseAffine(prob=1.0, scale_range=(0.02, 0.04)).set_random_state(0)
    >>> t(np.zeros((1, 64, 80), np.float32)).shape
    (1, 64, 80)
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, prob: float = 0.8, grid=(4, 4), scale_range=(0.01, 0.05), mode: str = "bilinear") -> None:
        RandomizableTransform.__init__(self, prob)
        self.grid = _check_grid(grid)
        self.scale_range = _check_scale_range(scale_range)
        self.mode = _check_mode(mode)
        self.scale = 0.0
        self._noise = np.zeros((self.grid[0] * self.grid[1], 2))  # standard normal draws
        self.src = self.dst = None

    def control_points(self, spatial_size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(src, dst) for an image of ``spatial_size`` (H, W) from the last random draw."""
        src = control_grid(spatial_size, self.grid)
        height, width = (float(s) for s in spatial_size)
        return src, src + self._noise * self.scale * np.array([width, height])

    def randomize(self, spatial_size: Sequence[int]) -> None:
        """Draw whether to warp, then the scale and the jitter of the control points."""
        super().randomize(None)
        if not self._do_transform:
            return
        self.scale = float(self.R.uniform(*self.scale_range))
        self._noise = self.R.standard_normal(self._noise.shape)
        self.src, self.dst = self.control_points(spatial_size)

    def __call__(self, img: NdarrayOrTensor, mode: str | None = None, randomize: bool = True) -> NdarrayOrTensor:
        """Warp ``img`` (C, H, W); ``mode`` overrides ``self.mode`` for this call."""
        _check_image_shape(img.shape)
        if randomize:
            self.randomize(img.shape[1:])
        if not self._do_transform:
            return img
        src, dst = self.control_points(img.shape[1:])
        return piecewise_affine_warp(img, src, dst, mode=self.mode if mode is None else mode)


class RandPiecewiseAffined(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandPiecewiseAffine`: one random warp for all ``keys``.

    Parameters
    ----------
    keys : keys of the (C, H, W) items to warp.
    prob, grid, scale_range : as in :class:`RandPiecewiseAffine`.
    mode : one of {"bilinear", "nearest"} or one per key, e.g. ``("bilinear", "nearest")`` for
        image and mask so the mask stays binary.
    allow_missing_keys : do not raise if a key is missing.

    The draw is made for the first key's size; keys of other sizes get the same warp relative to
    their size. Items are returned unchanged (same objects) when the warp is not applied.

    Examples
    --------
    >>> t = RandPiecewiseAffined(["image", "label"], prob=1.0, mode=("bilinear", "nearest"))
    >>> out = t.set_random_state(0)({"image": np.zeros((1, 32, 32)), "label": np.zeros((1, 32, 32))})
    """

    backend = RandPiecewiseAffine.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.8,
        grid=(4, 4),
        scale_range=(0.01, 0.05),
        mode: str | Sequence[str] = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        try:
            modes = ensure_tuple_rep(mode, len(self.keys))
        except ValueError as err:
            raise InputError(f"mode must be one value or one per key ({len(self.keys)}), got {mode!r}") from err
        self.mode = tuple(_check_mode(m) for m in modes)
        self.warp = RandPiecewiseAffine(prob=1.0, grid=grid, scale_range=scale_range, mode=self.mode[0])

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.warp.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        super().randomize(None)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        first_key = self.first_key(d)
        if not self._do_transform or first_key == ():
            return d
        self.warp.randomize(_check_image_shape(d[first_key].shape))
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = self.warp(d[key], mode=mode, randomize=False)
        return d
