"""Voxel size of a stack, in nanometres, and what the pipeline derives from it.

A stack's voxel size is (z, y, x) in nm. It comes from ``--voxel-size Z,Y,X`` (or the configs'
``voxel_size``), else from the file: ImageJ TIFF (resolution tags, ``spacing`` and ``unit``),
OME-TIFF (``PhysicalSize*`` of the first image), NIfTI (header zooms and units) or OME-Zarr
(level 0's ``scale`` transformation with the axes' units). Where none is known the Z/XY ratio is
estimated from the image (``io.anisotropy``): a clearly anisotropic stack (sections at least 2.5x
as thick as the pixels) is treated as the image shows it, anything else as isotropic (Z/XY 1, as
EPFL's FIB-SEM); a warning says which.

The ratio ``anisotropy = z / mean(y, x)`` scales MPP's Z steps (``transforms.mpp``) and the SCM
window (``scm_window_for``); the XY size picks the training resolution (``downsample_for``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emseg_monai.errors import InputError

logger = logging.getLogger(__name__)

NM_PER_UNIT = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "\u03bcm": 1e3,  # Greek mu
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "m": 1e9,
    "meter": 1e9,
    "å": 0.1,
    "angstrom": 0.1,
}
REFERENCE_XY_NM = 10.0  # training pixel size aimed at by downsample_for (EPFL's 5 nm -> 1/2 resolution)
REFERENCE_SCM_WINDOW = 15  # the SCM window measured best on isotropic 5 nm data


def parse_voxel_size(text: str | tuple | list) -> tuple[float, float, float]:
    """``"Z,Y,X"`` (or one number for all three) in nanometres -> (z, y, x) floats > 0.

    Examples
    --------
    >>> parse_voxel_size("40,5,5"), parse_voxel_size("5")
    ((40.0, 5.0, 5.0), (5.0, 5.0, 5.0))
    """
    try:
        if isinstance(text, (tuple, list)):
            values = [float(v) for v in text]
        else:
            values = [float(v) for v in str(text).replace("x", ",").split(",")]
    except (TypeError, ValueError):
        raise InputError(f"voxel size must be Z,Y,X in nm (e.g. 5,5,5), got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"voxel size must be three positive numbers Z,Y,X in nm, got {text!r}")
    return (values[0], values[1], values[2])


def _to_nm(size: tuple[float, float, float] | None, units: tuple[str, str, str]) -> tuple[float, float, float] | None:
    scales = [NM_PER_UNIT.get(str(u).strip().lower().replace("\\u00b5", "µ")) for u in units]
    if size is None or any(s is None for s in scales):
        return None
    return (size[0] * scales[0], size[1] * scales[1], size[2] * scales[2])


def _ome_tiff_size(tif) -> tuple[float, float, float] | None:
    """PhysicalSizeZ/Y/X of an OME-TIFF's first image, in nm (OME's default unit is µm)."""
    import xml.etree.ElementTree as ET

    text = tif.ome_metadata
    if not text:
        return None
    root = ET.fromstring(text)
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None)
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None
    x = float(pixels.get("PhysicalSizeX"))
    y = float(pixels.get("PhysicalSizeY", x))
    z = float(pixels.get("PhysicalSizeZ", 0) or 0)
    if z <= 0:  # a 2D-calibrated stack: XY known, Z not
        return None
    units = tuple(pixels.get(f"PhysicalSize{a}Unit", "µm") for a in "ZYX")
    return _to_nm((z, y, x), units)


def _zarr_size(path: Path) -> tuple[float, float, float] | None:
    """Level 0's ``scale`` of an OME-Zarr multiscale image (last three axes), in nm."""
    from emseg_monai.io.volumes import multiscales_of

    attrs: dict = {}
    for name in ("zarr.json", ".zattrs"):  # Zarr v3, v2 metadata; read as JSON, no store needed
        meta = path / name
        if meta.is_file():
            data = json.loads(meta.read_text())
            attrs = data.get("attributes", data)
            break
    multiscales = multiscales_of(attrs)
    if not multiscales:
        return None
    ms = multiscales[0]
    scale = next(
        (t["scale"] for t in ms["datasets"][0].get("coordinateTransformations", []) if t["type"] == "scale"), None
    )
    axes = ms.get("axes", [])
    if scale is None or len(scale) < 3:
        return None
    units = tuple((a.get("unit", "") if isinstance(a, dict) else "") for a in axes[-3:]) or ("", "", "")
    return _to_nm(tuple(float(s) for s in scale[-3:]), units)


def voxel_size_nm(path: str | Path) -> tuple[float, float, float] | None:
    """(z, y, x) voxel size in nm recorded in a TIFF, OME-TIFF, NIfTI or OME-Zarr file, or None.

    None when the file records no size, no unit, or cannot be read (metadata is optional).
    """
    from emseg_monai.io.monai_io import recorded_voxel_size
    from emseg_monai.io.stacks import TIFF_SUFFIXES, _suffix
    from emseg_monai.io.volumes import is_zarr_path

    path = Path(path)
    try:
        if is_zarr_path(path):
            return _zarr_size(path)
        if _suffix(path) in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                if tif.is_ome:
                    return _ome_tiff_size(tif)
    except Exception:  # unreadable metadata: treated as none recorded
        return None
    size, unit = recorded_voxel_size(path)
    return _to_nm(size, (unit, unit, unit))


@dataclass(frozen=True)
class VoxelSize:
    """The voxel size a run works with: ``nm`` (z, y, x) or None, and where it came from.

    ``source`` is ``"given"`` (option or config), ``"file"``, ``"image"`` (no size known, but the
    image is clearly anisotropic: ``estimate`` is its Z/XY ratio) or ``"unknown"`` (isotropic
    assumed; ``estimate`` is None or below ``anisotropy.CLEARLY_ANISOTROPIC``).
    """

    nm: tuple[float, float, float] | None
    source: str
    estimate: float | None = None

    @property
    def xy_nm(self) -> float | None:
        """The XY pixel size (mean of Y and X) in nm; None when unknown."""
        return None if self.nm is None else float(0.5 * (self.nm[1] + self.nm[2]))

    @property
    def anisotropy(self) -> float:
        """Z spacing over XY pixel size; the image's estimate where only that is known; else 1.0."""
        if self.nm is None:
            return float(self.estimate) if self.source == "image" else 1.0
        return float(self.nm[0] / self.xy_nm)

    def describe(self) -> str:
        if self.source == "image":
            return f"voxel size unknown, Z/XY = {self.anisotropy:.1f} as estimated from the image"
        if self.nm is None:
            return "voxel size unknown (assumed isotropic, Z/XY = 1)"
        z, y, x = self.nm
        return f"voxel {z:g} x {y:g} x {x:g} nm (Z, Y, X; {self.source}), Z/XY = {self.anisotropy:.2f}"

    def as_record(self) -> dict:
        record = {"voxel_size_nm": list(self.nm) if self.nm else None, "source": self.source}
        record["anisotropy"] = self.anisotropy
        if self.estimate is not None:
            record["estimated_anisotropy"] = round(float(self.estimate), 2)
        return record


def resolve_voxel_size(image_file: str | Path | None, given: str | tuple | list | None = None) -> VoxelSize:
    """The voxel size to use for ``image_file``: ``given`` ("Z,Y,X" nm) if set, else the file's.

    When neither is known, the Z/XY ratio estimated from the image (``io.anisotropy``) is used if it
    shows clearly anisotropic voxels, else isotropic voxels are assumed; a warning says which.
    """
    if given not in (None, "", "null"):
        return VoxelSize(parse_voxel_size(given), "given")
    size = voxel_size_nm(image_file) if image_file is not None and Path(image_file).exists() else None
    if size is not None:
        return VoxelSize(size, "file")
    from emseg_monai.io.anisotropy import CLEARLY_ANISOTROPIC, image_anisotropy

    name = Path(image_file).name if image_file is not None else "the stack"
    estimate = image_anisotropy(image_file) if image_file is not None else None
    if estimate is not None and estimate >= CLEARLY_ANISOTROPIC:
        estimate = round(estimate, 1)
        logger.warning(
            "%s records no voxel size; its neighbouring slices differ as much as pixels %.1f apart within a slice, "
            "so its sections are taken as that many times as thick as its pixels (Z/XY = %.1f); pass --voxel-size "
            "Z,Y,X in nm (e.g. 45,5,5) to set it",
            name,
            estimate,
            estimate,
        )
        return VoxelSize(None, "image", estimate)
    agrees = "" if estimate is None else f" (the image agrees: Z/XY about {estimate:.1f})"
    logger.warning(
        "%s records no voxel size: assuming isotropic voxels (Z/XY = 1, as 5 nm FIB-SEM)%s; for serial sections "
        "pass --voxel-size Z,Y,X in nm (e.g. 45,5,5)",
        name,
        agrees,
    )
    return VoxelSize(None, "unknown", estimate)


def anisotropy_of(image_file: str | Path | None, given: str | tuple | list | None = None) -> float:
    """``resolve_voxel_size(image_file, given).anisotropy`` (for configs)."""
    return resolve_voxel_size(image_file, given).anisotropy


def scm_window_for(anisotropy: float, reference: int = REFERENCE_SCM_WINDOW) -> int:
    """SCM window (odd, >= 3) covering the Z extent ``reference`` slices cover at Z/XY = 1 (or less).

    Examples
    --------
    >>> scm_window_for(1.0), scm_window_for(2.0), scm_window_for(8.0), scm_window_for(10.0)
    (15, 9, 3, 3)
    """
    if anisotropy <= 1.0:
        return int(reference)
    half = max(1, int(np.floor((reference // 2) / float(anisotropy) + 0.5)))
    return 2 * half + 1


def downsample_for(xy_nm: float, reference_nm: float = REFERENCE_XY_NM) -> float:
    """Training XY resolution factor bringing pixels near ``reference_nm`` (never upsampling).

    Examples
    --------
    >>> downsample_for(5.0), downsample_for(4.6), downsample_for(10.0), downsample_for(2.5)
    (2.0, 2.0, 1.0, 4.0)
    """
    return float(max(1, int(np.floor(reference_nm / float(xy_nm) + 0.5))))
