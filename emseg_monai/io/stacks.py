"""Read and write image and mask stacks with validation; every write is atomic.

Axis order everywhere in emseg_monai is (Z, Y, X). TIFF files store the stack in that order.
NIfTI files store it the NIfTI way, (X, Y, Z); ``read_stack`` and ``write_stack`` transpose so the
arrays in memory are always (Z, Y, X).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emseg_monai.errors import InputError

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
STACK_SUFFIXES = TIFF_SUFFIXES + NIFTI_SUFFIXES


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in STACK_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def check_input_file(path: str | Path) -> Path:
    """Return ``path`` as a Path after checking it is an existing, non-empty stack file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"stack file does not exist: {path}")
    if path.is_dir():
        raise InputError(f"expected a stack file, got a folder: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"stack file is empty: {path}")
    if _suffix(path) not in STACK_SUFFIXES:
        raise InputError(f"unsupported stack format {_suffix(path)!r} for {path} (use .tif, .tiff, .nii or .nii.gz)")
    return path


def read_stack(path: str | Path, ndim: int = 3) -> np.ndarray:
    """Read an image stack as a numpy array in (Z, Y, X) order.

    Parameters
    ----------
    path : str or Path
        A TIFF (multi-page or one 3D page) or NIfTI file.
    ndim : int
        Required number of dimensions (3 for a stack).

    Returns
    -------
    numpy.ndarray
        (Z, Y, X) array of the stored dtype (uint8, uint16, float32, ...).

    Raises
    ------
    InputError
        Missing, empty, unreadable or corrupt file; wrong number of dimensions; a non-finite float.
    """
    path = check_input_file(path)
    suffix = _suffix(path)
    try:
        if suffix in TIFF_SUFFIXES:
            from emseg_monai.io.tiff_reader import read_tiff_array

            array, _ = read_tiff_array(path)
        else:
            import nibabel as nib

            array = np.asarray(nib.load(str(path)).dataobj)
            if array.ndim == 3:
                array = np.ascontiguousarray(array.transpose(2, 1, 0))
    except InputError:
        raise
    except Exception as exc:  # tifffile and nibabel raise many types for corrupt files
        raise InputError(f"cannot read {path} as {suffix} stack: {type(exc).__name__}: {exc}") from None
    if array.ndim != ndim:
        what = "a 2D image" if array.ndim == 2 else f"a {array.ndim}D array of shape {array.shape}"
        raise InputError(f"{path} holds {what}; expected a {ndim}D (Z, Y, X) stack")
    if array.dtype.kind not in "uif" and array.dtype != bool:
        raise InputError(f"{path} has unsupported dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(f"{path} contains {int((~np.isfinite(array)).sum())} NaN or inf values")
    return array


def read_mask(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a binary mask stack stored as {0, 1} or {0, 255}; return a bool (Z, Y, X) array.

    Raises
    ------
    InputError
        As ``read_stack``; values other than {0, 1} or {0, 255} (the message lists them); a shape
        different from ``shape``.
    """
    return as_mask(read_stack(path), path, shape)


def as_mask(array: np.ndarray, path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``array`` read from ``path`` as a bool mask, checked as ``read_mask`` checks (shape, values)."""
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise InputError(f"{path} has shape {tuple(array.shape)}, expected {tuple(shape)} (the image's shape)")
    return binarize_labels(array, name=str(path))


def binarize_labels(array: np.ndarray, name: str = "label stack") -> np.ndarray:
    """Map a {0, 1} or {0, 255} array to bool; raise InputError naming any other values found."""
    values = np.unique(array)
    if np.isin(values, (0, 1)).all() or np.isin(values, (0, 255)).all():
        return array > 0
    shown = ", ".join(str(v) for v in values[:8]) + (", ..." if values.size > 8 else "")
    raise InputError(f"{name} is not binary: values {shown} found; expected {{0, 1}} or {{0, 255}}")


def check_stack_output(path: str | Path) -> str:
    """The format suffix of a stack file to write; InputError for one ``write_stack`` cannot write."""
    suffix = _suffix(Path(path))
    if suffix not in STACK_SUFFIXES:
        raise InputError(
            f"unsupported output format {suffix!r} for {path} (stacks: .tif, .tiff, .nii, .nii.gz; "
            ".zarr goes block by block)"
        )
    return suffix


def check_output_path(path: str | Path, overwrite: bool = False) -> Path:
    """Check that ``path`` can be written: its folder exists and is writable; it exists only if allowed."""
    path = Path(path)
    if _suffix(path) not in STACK_SUFFIXES + (".csv", ".json", ".png", ".md", ".pt", ".yaml", ".yml", ".conf"):
        raise InputError(f"unsupported output format {_suffix(path)!r} for {path}")
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output folder is a file, not a folder: {folder}")
    if not folder.is_dir():
        raise InputError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise InputError(f"output folder is not writable: {folder}")
    if path.is_dir():
        raise InputError(f"output path is a folder: {path}")
    if path.exists() and not overwrite:
        raise InputError(f"output exists: {path} (pass --overwrite to replace it; bundle commands: --overwrite true)")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None], overwrite: bool = True) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    Nothing is left at ``path`` or beside it when ``write`` fails. The temporary name keeps the
    suffix of ``path`` so format-sniffing writers behave.
    """
    path = check_output_path(path, overwrite=overwrite)
    suffix = _suffix(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_stack(
    path: str | Path,
    array: np.ndarray,
    overwrite: bool = True,
    voxel_size: tuple[float, float, float] | None = None,
) -> Path:
    """Write a (Z, Y, X) stack atomically as compressed TIFF (zlib) or NIfTI (.nii.gz compressed).

    Parameters
    ----------
    path : str or Path
        Output file; the suffix picks the format.
    array : numpy.ndarray
        (Z, Y, X) array; bool is written as uint8 0/255.
    overwrite : bool
        Replace an existing file (else InputError).
    voxel_size : (z, y, x) floats or None
        In nm; recorded in the file's metadata when given (TIFF: ImageJ spacing, resolution and
        unit nm; NIfTI: the header's zooms, without a unit, since NIfTI has none for nm).
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(f"write_stack expects a (Z, Y, X) array, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8) * np.uint8(255)
    suffix = check_stack_output(path)

    def _write(tmp: Path) -> None:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            kwargs: dict = {}
            if voxel_size is not None and array.dtype in (np.uint8, np.uint16, np.float32):
                kwargs = {"imagej": True, "resolution": (1 / voxel_size[2], 1 / voxel_size[1])}
                kwargs["metadata"] = {"spacing": voxel_size[0], "unit": "nm", "axes": "ZYX"}
            tifffile.imwrite(tmp, array, compression="zlib", photometric="minisblack", **kwargs)
        else:
            import nibabel as nib

            zooms = (1.0, 1.0, 1.0) if voxel_size is None else voxel_size
            affine = np.diag([zooms[2], zooms[1], zooms[0], 1.0])
            nib.save(nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine), str(tmp))

    return atomic_write(path, _write, overwrite=overwrite)
