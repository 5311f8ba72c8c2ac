"""Lazy (Z, Y, X) volumes: read slices on demand from TIFF, NIfTI or Zarr, write blocks to Zarr or TIFF.

``open_volume`` returns an object with ``shape``, ``dtype`` and numpy-style ``[z0:z1]`` /
``[::a, ::b, ::c]`` indexing that reads only what is asked for, so block-wise inference never
holds a whole volume. Zarr input may be a plain array or an OME-Zarr multiscale group (level 0).
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from emseg_monai.errors import InputError
from emseg_monai.io.stacks import (
    NIFTI_SUFFIXES,
    TIFF_SUFFIXES,
    _suffix,
    as_mask,
    check_input_file,
    read_mask,
    read_stack,
)

ZARR_SUFFIXES = (".zarr",)


def is_zarr_path(path: str | Path) -> bool:
    """True for a ``.zarr`` path (a folder store)."""
    return str(path).rstrip("/").lower().endswith(ZARR_SUFFIXES)


class _NiftiZYX:
    """A NIfTI image's data proxy (stored X, Y, Z) seen as (Z, Y, X), read lazily."""

    def __init__(self, proxy: Any) -> None:
        self.proxy = proxy
        self.stored_shape = tuple(int(s) for s in proxy.shape)
        self.shape = tuple(int(s) for s in proxy.shape[::-1])
        self.dtype = np.dtype(proxy.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        return np.asarray(self.proxy[key[2], key[1], key[0]]).T


def multiscales_of(attrs: dict) -> list:
    """An OME-Zarr group's ``multiscales`` list (NGFF 0.4 top level, or 0.5 under ``ome``); [] if none."""
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales") or []


def _open_zarr(path: Path) -> Any:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"cannot open {path} as Zarr: {type(exc).__name__}: {exc}") from None
    if isinstance(node, zarr.Array):
        return node
    multiscales = multiscales_of(dict(node.attrs))
    if multiscales:
        level0 = multiscales[0]["datasets"][0]["path"]
        try:
            return node[level0]
        except KeyError:
            raise InputError(f"{path}: its OME-Zarr multiscales name level {level0!r}, which is missing") from None
    arrays = list(node.array_keys())
    if len(arrays) == 1:
        return node[arrays[0]]
    found = f"arrays {arrays}" if arrays else "no array"
    raise InputError(f"{path} is a Zarr group with {found}; expected one array or an OME-Zarr multiscale image")


def open_volume(path: str | Path) -> Any:
    """Open a (Z, Y, X) volume lazily: TIFF (pages read on demand), NIfTI, or Zarr.

    Returns
    -------
    array-like
        ``shape`` (Z, Y, X), ``dtype`` and numpy-style indexing that returns numpy arrays.

    Raises
    ------
    InputError
        Missing or unreadable path, not 3D, unsupported dtype, Zarr without a usable array.
    """
    path = Path(path)
    if is_zarr_path(path):
        if not path.exists():
            raise InputError(f"Zarr store does not exist: {path}")
        volume = _open_zarr(path)
    else:
        path = check_input_file(path)
        try:
            if _suffix(path) in TIFF_SUFFIXES:
                import tifffile
                import zarr

                from emseg_monai.io.tiff_reader import _recorded_shape

                with tifffile.TiffFile(str(path)) as tif:
                    axes = tif.series[0].axes if tif.series else ""
                    series_shape = tuple(tif.series[0].shape) if tif.series else ()
                    recorded = _recorded_shape(tif)
                if axes.endswith("S"):
                    raise ValueError(
                        f"it holds RGB or multi-sample pixels (axes {axes!r}); expected a grey (Z, Y, X) stack"
                    )
                if recorded is not None and series_shape != recorded:
                    raise ValueError(
                        f"the file is truncated or corrupt: read {series_shape}, its metadata records {recorded}"
                    )
                store = tifffile.imread(str(path), aszarr=True)
                volume = zarr.open(store, mode="r")
                weakref.finalize(volume, store.close)  # the file stays open while the volume is in use
            elif _suffix(path) in NIFTI_SUFFIXES:
                import nibabel as nib

                volume = _NiftiZYX(nib.load(str(path)).dataobj)
            else:  # check_input_file already refused other suffixes
                raise InputError(f"unsupported volume format for {path}")
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot read {path} as {_suffix(path)} stack: {type(exc).__name__}: {exc}") from None
    if len(volume.shape) != 3:
        ndim = len(volume.shape)
        stored = tuple(getattr(volume, "stored_shape", volume.shape))
        what = "a 2D image" if ndim == 2 else f"a {ndim}D array of shape {stored}"
        raise InputError(f"{path} holds {what}; expected a 3D (Z, Y, X) stack")
    if np.dtype(volume.dtype).kind not in "uif":
        raise InputError(f"{path} has unsupported dtype {volume.dtype}")
    chunks = getattr(volume, "chunks", None)
    if chunks is not None and (len(chunks) != 3 or min(int(c) for c in chunks) < 1):
        raise InputError(f"{path} has an unreadable chunking: chunk shape {tuple(chunks)}")
    if min(volume.shape) > 0:
        read_slices(volume, 0, 1, path)  # one chunk: fail now, not hours into a run
    return volume


def read_slices(volume: Any, z0: int, z1: int, name: str | Path = "volume") -> np.ndarray:
    """``volume[z0:z1]`` as a numpy array; an unreadable chunk raises InputError naming the slices."""
    try:
        return np.asarray(volume[z0:z1])
    except InputError:
        raise
    except Exception as exc:  # codecs and stores raise many types for damaged chunks
        message = (str(exc).splitlines() or [""])[0][:200]
        raise InputError(f"cannot read slices {z0}..{z1 - 1} of {name}: {type(exc).__name__}: {message}") from None


def create_zarr_output(
    path: str | Path, shape: tuple[int, int, int], block: int, dtype: Any = np.uint8, resume: bool = False
) -> Any:
    """Create (or, with ``resume``, reopen) the (Z, Y, X) output array of block-wise inference.

    Chunks are (``block``, Y, X), so each block of slices is written as one whole chunk.
    """
    import zarr

    path = Path(path)
    if resume and path.exists():
        array = zarr.open_array(str(path), mode="r+")
        if tuple(array.shape) != tuple(shape):
            raise InputError(f"cannot resume into {path}: it holds shape {tuple(array.shape)}, the input {shape}")
        return array
    return zarr.create_array(
        str(path), shape=shape, chunks=(block, shape[1], shape[2]), dtype=dtype, fill_value=0, overwrite=True
    )


def record_settings(path: Path, settings: dict) -> None:
    """Write ``settings`` beside block outputs (JSON) so a resumed run can check it is the same job."""
    path.write_text(json.dumps(settings, indent=2, sort_keys=True))


def read_whole(path: str | Path, mask: bool = False, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The whole (Z, Y, X) array of a TIFF, NIfTI or Zarr stack, in memory.

    With ``mask``, the values must be {0, 1} or {0, 255} and a bool array is returned; ``shape``,
    when given, must match. TIFF and NIfTI go through ``read_stack`` / ``read_mask``; a Zarr path
    (a ``.zarr`` output of block-wise segmentation, say) is opened with ``open_volume``.
    """
    if not is_zarr_path(path):
        return read_mask(path, shape) if mask else read_stack(path)
    volume = open_volume(path)
    array = read_slices(volume, 0, int(volume.shape[0]), path)
    return as_mask(array, path, shape) if mask else array
