"""A MONAI ``ImageReader`` for TIFF stacks, built on tifffile.

``LoadImage`` / ``LoadImaged`` in MONAI 1.6 have no reader for ordinary multi-page TIFF stacks; pass
``reader=TiffStackReader()`` (or the dotted name ``"emseg_monai.io.TiffStackReader"``) to read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data.image_reader import ImageReader, _copy_compatible_dict, _stack_images
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

TIFF_SUFFIXES = (".tif", ".tiff")


def read_tiff_array(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """Read a TIFF file (multi-page, or one 3D page) into memory.

    Parameters
    ----------
    path : str or Path
        The TIFF file.

    Returns
    -------
    array : numpy.ndarray
        The pixel data as stored: (Z, Y, X) for a stack, (Y, X) for a single 2D page; dtype as
        stored (uint8, uint16, float32, ...).
    voxel_size : tuple of 3 floats or None
        (z, y, x) voxel size when the file records it (ImageJ ``spacing`` and the X/Y resolution
        tags), else None.
    """
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        axes = tif.series[0].axes if tif.series else ""
        if axes.endswith("S"):  # interleaved RGB(A) pixels; planar "SYX" reads as a (Z, Y, X) stack
            raise ValueError(f"it holds RGB or multi-sample pixels (axes {axes!r}); expected a grey (Z, Y, X) stack")
        array = tif.asarray()
        expected = _recorded_shape(tif)
        if expected is not None and tuple(array.shape) != expected:
            raise ValueError(f"the file is truncated or corrupt: read {array.shape}, its metadata records {expected}")
        voxel_size = _voxel_size(tif)
    return array, voxel_size


def _recorded_shape(tif: Any) -> tuple[int, ...] | None:
    """The array shape written in tifffile's or ImageJ's metadata, when the file records one."""
    shaped = tif.shaped_metadata
    if shaped and "shape" in shaped[0]:
        return tuple(int(v) for v in shaped[0]["shape"])
    images = (tif.imagej_metadata or {}).get("images")
    if images and int(images) > 1:
        page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        return (int(images), *page.shape)
    return None


def _voxel_size(tif: Any) -> tuple[float, float, float] | None:
    """(z, y, x) spacing from ImageJ metadata and resolution tags, or None when not recorded.

    A stack calibrated in XY without an ImageJ ``spacing`` is taken as isotropic (z = mean of y, x),
    not as 1 unit thick (1 um sections, say, when the unit is microns).
    """
    try:
        page = tif.pages[0]
        xres = page.tags.get("XResolution")
        yres = page.tags.get("YResolution")
        if xres is None or yres is None:
            return None
        x = xres.value[1] / xres.value[0]
        y = yres.value[1] / yres.value[0]
        ij = tif.imagej_metadata or {}
        z = float(ij["spacing"]) if "spacing" in ij else 0.5 * (x + y)
        if not (np.isfinite(x) and np.isfinite(y)) or x <= 0 or y <= 0:
            return None
        if x == 1.0 and y == 1.0 and "spacing" not in ij:
            return None
        return (z, float(y), float(x))
    except (ZeroDivisionError, TypeError, IndexError, KeyError, AttributeError):
        return None


class TiffStackReader(ImageReader):
    """Read TIFF stacks (multi-page or one 3D page; uint8, uint16 or float) for ``LoadImage``.

    The array keeps the file's order, (Z, Y, X) for a stack, with no channel dimension
    (``original_channel_dim`` is ``"no_channel"``; add ``EnsureChannelFirst`` for (1, Z, Y, X)).
    The affine is diagonal with the voxel size when the file records one, else identity.

    Parameters
    ----------
    dtype : numpy dtype or None
        Cast the data to this type; None keeps the stored type.

    Examples
    --------
    >>> from monai.transforms import LoadImage
    >>> from emseg_monai.io import TiffStackReader
    >>> img = LoadImage(reader=TiffStackReader(), image_only=True)("stack.tif")  # doctest: +SKIP
    >>> img.shape  # (Z, Y, X)  # doctest: +SKIP
    """

    def __init__(self, dtype: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.dtype = dtype
        self.kwargs = kwargs

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        return all(str(f).lower().endswith(TIFF_SUFFIXES) for f in ensure_tuple(filename))

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> list[dict] | dict:
        images = [dict(zip(("array", "voxel_size"), read_tiff_array(p)), path=str(p)) for p in ensure_tuple(data)]
        return images if len(images) > 1 else images[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        arrays: list[np.ndarray] = []
        compatible_meta: dict = {}
        for item in img if isinstance(img, (list, tuple)) else (img,):
            array = item["array"] if self.dtype is None else item["array"].astype(self.dtype)
            spacing = item["voxel_size"] or (1.0,) * array.ndim
            spacing = tuple(spacing)[-array.ndim :]
            affine = np.eye(array.ndim + 1)
            affine[: array.ndim, : array.ndim] = np.diag(spacing)
            meta = {
                MetaKeys.AFFINE: affine,
                MetaKeys.ORIGINAL_AFFINE: affine.copy(),
                MetaKeys.SPATIAL_SHAPE: np.asarray(array.shape),
                MetaKeys.ORIGINAL_CHANNEL_DIM: "no_channel",
                MetaKeys.SPACE: SpaceKeys.RAS,
                "pixdim": np.asarray((1.0, *spacing)),
                "filename_or_obj": item["path"],
            }
            arrays.append(array)
            _copy_compatible_dict(meta, compatible_meta)
        return _stack_images(arrays, compatible_meta), compatible_meta
