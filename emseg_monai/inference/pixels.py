"""Run the networks at the pixel size they were trained at, whatever the input's pixel size.

A network trained on 5 nm pixels at 1/2 resolution has learnt what mitochondria look like at
10 nm per pixel. Given a stack of 8 nm pixels, the same downsample shows it objects at 16 nm per
pixel, 1.6x smaller than it knows, and Dice drops by about 5 points on EPFL resampled that way
(docs/results.md, "Other microscopes"). Where both pixel sizes are known, the downsample is scaled so
that ``input_xy_nm * downsample == trained_xy_nm * trained_downsample``.

Known means: ``voxel_size`` given ("Z,Y,X" nm), else recorded in the file (ImageJ TIFF, OME-TIFF,
NIfTI, OME-Zarr), and ``trained_xy_nm`` set in the bundle's ``inference.yaml``. Otherwise the
trained downsample is used unchanged, which is right for stacks of the training pixel size.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from emseg_monai.io.voxels import parse_voxel_size, voxel_size_nm
from emseg_monai.options import as_bool, as_float

logger = logging.getLogger(__name__)

TOLERANCE = 0.05  # relative pixel-size differences below this keep the trained downsample


def input_xy_nm(image_file: str | Path | None, voxel_size: Any = None) -> float | None:
    """XY pixel size (nm, mean of Y and X) of the input: ``voxel_size`` if given, else the file's, else None."""
    if voxel_size not in (None, "", "null"):
        size = parse_voxel_size(voxel_size)
    elif image_file is None or not Path(str(image_file)).exists():
        return None
    else:
        size = voxel_size_nm(image_file)
    return None if size is None else 0.5 * (size[1] + size[2])


def matched_downsample(
    downsample: float,
    image_file: str | Path | None,
    voxel_size: Any = None,
    trained_xy_nm: Any = None,
    match: Any = True,
    name: str = "stage 1",
) -> float:
    """The downsample at which a network trained at ``trained_xy_nm`` pixels sees this input's pixels as in training.

    Parameters
    ----------
    downsample : float
        The trained downsample (>= 1): the network saw ``trained_xy_nm * downsample`` nm per pixel.
    image_file : path or None
        The input stack; its recorded voxel size is read unless ``voxel_size`` is given.
    voxel_size : str, sequence or None
        The input's voxel size "Z,Y,X" in nm (overrides the file's).
    trained_xy_nm : float or None
        XY pixel size of the training images; None: unknown, nothing is changed.
    match : bool
        False: the trained downsample, whatever the pixel sizes.
    name : str
        Which network, for the log line.

    Returns
    -------
    float
        ``downsample * trained_xy_nm / input_xy_nm``, at least 1 (an input coarser than the
        network's pixels is not upsampled; a warning says so), or ``downsample`` unchanged.
    """
    downsample = as_float(downsample, f"{name} downsample", minimum=1.0)
    if not as_bool(match, "match_pixel_size") or trained_xy_nm in (None, "", "null"):
        return downsample
    trained = as_float(trained_xy_nm, "trained_xy_nm", minimum=1e-6)
    given = input_xy_nm(image_file, voxel_size)
    if given is None:
        return downsample
    ratio = trained / given
    if abs(ratio - 1.0) < TOLERANCE:
        return downsample
    wanted = downsample * ratio
    network_nm = trained * downsample
    if wanted < 1.0:
        logger.warning(
            "%s: the stack's %.3g nm pixels are coarser than the %.3g nm the network was trained at; it runs "
            "at the stack's full resolution, where objects are %.2fx the size in pixels it was trained on",
            name,
            given,
            network_nm,
            network_nm / given,
        )
        return 1.0
    logger.info(
        "%s: %.3g nm pixels (weights trained on %.3g nm at 1/%g): running at 1/%.3g, %.3g nm per network pixel",
        name,
        given,
        trained,
        downsample,
        wanted,
        network_nm,
    )
    return float(wanted)
