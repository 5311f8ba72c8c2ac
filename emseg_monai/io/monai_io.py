"""The MONAI side of ``io``: ``StackReader`` and ``LoadStackd`` to load, ``SaveStackd`` to write.

Both go through ``read_stack`` / ``write_stack``, so bundle pipelines get the same checks (one-line
errors naming the file), the same (Z, Y, X) order for TIFF and NIfTI, and atomic writes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple

from emseg_monai.errors import InputError
from emseg_monai.io.stacks import STACK_SUFFIXES, TIFF_SUFFIXES, _suffix, read_stack, write_stack
from emseg_monai.io.tiff_reader import TiffStackReader, _voxel_size
from emseg_monai.options import as_bool


def recorded_voxel_size(path: str | Path) -> tuple[tuple[float, float, float] | None, str]:
    """(z, y, x) voxel size and its unit as a TIFF (ImageJ spacing and unit, resolution tags) or a
    NIfTI header records them; ``(None, "")`` when the file records none or cannot be read."""
    path = Path(path)
    try:
        if _suffix(path) in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                unit = str((tif.imagej_metadata or {}).get("unit", "")).strip().lower()
                return _voxel_size(tif), unit
        import nibabel as nib

        header = nib.load(str(path)).header
        x, y, z = (float(v) for v in header.get_zooms()[:3])
        return (z, y, x), str(header.get_xyzt_units()[0] or "")
    except Exception:  # metadata is optional: the caller falls back (no size, or --voxel-size)
        return None, ""


def stack_voxel_size(path: str | Path) -> tuple[float, float, float] | None:
    """(z, y, x) voxel size a TIFF or NIfTI file records, or None (a NIfTI's default 1, 1, 1 too)."""
    size, _ = recorded_voxel_size(path)
    nifti_default = _suffix(Path(path)) not in TIFF_SUFFIXES and size == (1.0, 1.0, 1.0)
    return None if nifti_default else size


class StackReader(TiffStackReader):
    """A MONAI ``ImageReader`` for TIFF and NIfTI stacks, always (Z, Y, X), checked by ``read_stack``.

    Pass it to ``LoadImage(d)`` as ``reader=StackReader()`` (or ``"emseg_monai.io.StackReader"``);
    add ``ensure_channel_first=True`` for (1, Z, Y, X). Bad files raise ``InputError`` naming them.
    """

    def verify_suffix(self, filename: Sequence[str | Path] | str | Path) -> bool:
        return all(_suffix(Path(str(f))) in STACK_SUFFIXES for f in ensure_tuple(filename))

    def read(self, data: Sequence[str | Path] | str | Path, **kwargs: Any) -> list[dict] | dict:
        images = [
            {"array": read_stack(p), "voxel_size": stack_voxel_size(p), "path": str(p)} for p in ensure_tuple(data)
        ]
        return images if len(images) > 1 else images[0]


class LoadStackd(MapTransform):
    """Load the stack files named by ``keys`` with MONAI's ``LoadImage`` and ``StackReader``.

    Gives (1, Z, Y, X) ``MetaTensor``s of the stored dtype. Unlike ``LoadImaged(reader=...)``,
    which falls back to MONAI's other readers when the given one fails (a PIL reader then returns
    the first page of a TIFF it cannot check), a file ``StackReader`` refuses stays refused, with
    its one-line ``InputError``.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        from monai.transforms import LoadImage

        super().__init__(keys, allow_missing_keys)
        self.loader = LoadImage(image_only=True, ensure_channel_first=True, dtype=None)
        self.reader = StackReader()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key], reader=self.reader)
        return d


class SaveStackd(MapTransform):
    """Write each ``keys`` item, (Z, Y, X) or (1, Z, Y, X), to the path held in ``data[path_key]``.

    The file name gets ``suffix`` before its extension (``masks.tif`` + ``_stage1_prob`` ->
    ``masks_stage1_prob.tif``). Writes are atomic; an existing file is refused unless ``overwrite``.
    The data dict is returned unchanged.

    Examples
    --------
    >>> save = SaveStackd("pred", path_key="output", suffix="_mask")
    >>> save({"pred": np.zeros((1, 2, 4, 4), np.uint8), "output": "out/masks.tif"})  # doctest: +SKIP
    """

    def __init__(
        self,
        keys: KeysCollection,
        path_key: str = "output",
        suffix: str = "",
        overwrite: Any = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.path_key = path_key
        self.suffix = suffix
        self.overwrite = as_bool(overwrite, "overwrite")

    def path(self, data: Mapping[Hashable, Any]) -> Path:
        """The output path of ``data`` with this writer's suffix."""
        if self.path_key not in data:
            raise InputError(f"SaveStackd: the data has no {self.path_key!r} entry naming the output file")
        path = Path(str(data[self.path_key]))
        if not self.suffix:
            return path
        ext = _suffix(path)
        return path.with_name(path.name[: len(path.name) - len(ext)] + self.suffix + ext)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            array = d[key]
            array = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
            if array.ndim == 4 and array.shape[0] == 1:
                array = array[0]
            write_stack(self.path(d), array, overwrite=self.overwrite)
        return d
