"""Per-mitochondrion measurements of a final mask: 3D connected components, sizes, boxes, centroids.

``measure_objects`` labels a (Z, Y, X) mask in 3D and returns one row per object;
``write_measurements`` writes them as CSV; the voxel size comes from ``--voxel-size`` or the file
(``io.voxels.voxel_size_nm``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from scipy import ndimage

from emseg_monai.errors import InputError
from emseg_monai.io.stacks import atomic_write
from emseg_monai.io.voxels import parse_voxel_size, voxel_size_nm

COLUMNS = (
    "id",
    "voxels",
    "volume_um3",
    "first_slice",
    "last_slice",
    "y_min",
    "y_max",
    "x_min",
    "x_max",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "touches_border",
)
_STRUCTURES = {6: 1, 18: 2, 26: 3}  # connectivity -> ndimage.generate_binary_structure rank


def measure_objects(
    mask: np.ndarray, voxel_size: tuple[float, float, float] | None = None, connectivity: int = 26, min_voxels: int = 1
) -> list[dict]:
    """One row per 3D connected component of ``mask``.

    Parameters
    ----------
    mask : numpy.ndarray
        (Z, Y, X) bool or 0/1 mask.
    voxel_size : (z, y, x) floats in nm, or None
        Gives ``volume_um3``; None leaves it empty.
    connectivity : int
        6 (faces), 18 (faces and edges) or 26 (faces, edges and corners) neighbours.
    min_voxels : int
        Objects smaller than this are left out (ids stay those of the labelling).

    Returns
    -------
    list of dict
        Keys ``COLUMNS``: id (1..), voxel count, volume in um^3, first and last slice (Z), Y and X
        bounds (inclusive), centroid (z, y, x in voxels), whether the object touches a face of the
        volume.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"measuring needs a (Z, Y, X) mask, got shape {mask.shape}")
    if connectivity not in _STRUCTURES:
        raise InputError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    structure = ndimage.generate_binary_structure(3, _STRUCTURES[connectivity])
    labels, _ = ndimage.label(mask > 0, structure=structure)
    voxel_um3 = None if voxel_size is None else float(np.prod(voxel_size)) * 1e-9
    rows = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        zz, yy, xx = np.nonzero(labels[box] == index)
        if zz.size < min_voxels:
            continue
        (z0, z1), (y0, y1), (x0, x1) = ((s.start, s.stop - 1) for s in box)
        border = z0 == 0 or y0 == 0 or x0 == 0 or z1 == mask.shape[0] - 1 or y1 == mask.shape[1] - 1
        border = border or x1 == mask.shape[2] - 1
        rows.append(
            {
                "id": index,
                "voxels": int(zz.size),
                "volume_um3": "" if voxel_um3 is None else round(zz.size * voxel_um3, 6),
                "first_slice": z0,
                "last_slice": z1,
                "y_min": y0,
                "y_max": y1,
                "x_min": x0,
                "x_max": x1,
                "centroid_z": round(float(zz.mean()) + z0, 2),
                "centroid_y": round(float(yy.mean()) + y0, 2),
                "centroid_x": round(float(xx.mean()) + x0, 2),
                "touches_border": bool(border),
            }
        )
    return rows


def write_measurements(path: str | Path, rows: list[dict], overwrite: bool = False) -> Path:
    """Write ``rows`` of ``measure_objects`` as CSV (header ``COLUMNS``), atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, lambda tmp: tmp.write_text(text.getvalue()), overwrite=overwrite)


def measure_file(
    mask_file: str | Path,
    csv_file: str | Path | None = None,
    voxel_size: str | tuple[float, float, float] | None = None,
    connectivity: int = 26,
    min_voxels: int = 1,
    overwrite: bool = False,
) -> str:
    """Measure every object of a mask stack file and write the CSV; returns a one-line summary.

    ``csv_file`` defaults to ``<mask name>_objects.csv`` beside the mask; ``voxel_size`` ("Z,Y,X"
    in nm, or a tuple) defaults to the one the file records (else ``volume_um3`` stays empty).
    """
    import logging
    import time

    from emseg_monai.io.stacks import check_output_path
    from emseg_monai.io.volumes import read_whole

    mask_path = Path(mask_file)
    name = mask_path.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name.rstrip("/")).stem
    csv_path = Path(csv_file) if csv_file else mask_path.with_name(f"{stem}_objects.csv")
    check_output_path(csv_path, overwrite=overwrite)
    voxel = parse_voxel_size(voxel_size) if isinstance(voxel_size, str) else voxel_size
    mask = read_whole(mask_path, mask=True)
    if voxel is None:
        voxel = voxel_size_nm(mask_path)
        if voxel is None:
            logging.getLogger(__name__).warning(
                "%s records no voxel size with a unit: volume_um3 left empty (pass --voxel-size)", name
            )
    start = time.perf_counter()
    rows = measure_objects(mask, voxel, connectivity, min_voxels)
    write_measurements(csv_path, rows, overwrite=overwrite)
    border = sum(row["touches_border"] for row in rows)
    size = f"voxel {voxel[0]:g} x {voxel[1]:g} x {voxel[2]:g} nm" if voxel else "voxel size unknown"
    median = f", median {np.median([row['voxels'] for row in rows]):.0f} voxels" if rows else ""
    total = f", {sum(row['volume_um3'] for row in rows):.3f} um^3 in all" if voxel and rows else ""
    return (
        f"{len(rows)} objects ({border} touching the border){median}{total} ({size}); "
        f"wrote {csv_path} in {time.perf_counter() - start:.1f} s"
    )
