"""Fit the input's voxel size to the one the weights were trained on.

Three things depend on it, all measured on EPFL (docs/results.md, "Other microscopes"):

- **Pixel size.** A network trained on 5 nm pixels at 1/2 resolution has learnt mitochondria at
  10 nm per pixel. A stack of 8 nm pixels at the same downsample shows it objects 1.6x smaller than
  it knows (final Dice 88.88 instead of 93.98 on EPFL resampled so). Where both pixel sizes are
  known, the downsample is scaled so that ``input_xy_nm * downsample == trained_xy_nm * trained_downsample``.
- **Sections that do not line up.** A bundle trained on thick sections smooths the SCM's output
  along Z unless its training stack was misaligned (``smoothing_z`` 0). A later stack whose
  neighbouring sections are shifted (``io.alignment``, the training run's rule) gets no smoothing
  along Z, with a warning (``z_smoothing_for`` for files, ``shifted_sections`` for a napari layer);
  an explicit ``smoothing_z`` is kept.
- **Section thickness.** The SCM reads a window of N neighbouring slices. On sections twice as thick
  as its training stack's it gains nothing, and it loses more the thicker they get (EPFL kept at
  every 2nd, 4th or 8th slice: -0.03, -7.6, -30.0 Dice against stage 1). From twice the trained Z
  spacing on, stage 1 alone is used, with a warning.

Known means: ``voxel_size`` given ("Z,Y,X" nm), else recorded in the file (ImageJ TIFF, OME-TIFF,
NIfTI, OME-Zarr), and ``trained_voxel_size`` set in the bundle's ``inference.yaml``. Otherwise
nothing is changed, which is right for stacks like the training one. A run trained on a stack of
unknown voxel size records the Z/XY ratio it assumed instead (``trained_z_ratio``: estimated from its
image, or 1): pixel sizes cannot be matched then, but section thickness and alignment are judged
against that ratio.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from emseg_monai.errors import InputError
from emseg_monai.io.voxels import parse_voxel_size, voxel_size_nm
from emseg_monai.options import as_bool, as_float

logger = logging.getLogger(__name__)

TOLERANCE = 0.05  # relative pixel-size differences below this keep the trained downsample
SCM_MAX_Z_RATIO = 2.0  # sections this many times as thick as the training stack's: no SCM


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none"))


def input_voxel_nm(image_file: str | Path | None, voxel_size: Any = None) -> tuple[float, float, float] | None:
    """(z, y, x) nm of the input: ``voxel_size`` if given, else as the file records it, else None."""
    if not _unset(voxel_size):
        return parse_voxel_size(voxel_size)
    if image_file is None or not Path(str(image_file)).exists():
        return None
    path = Path(str(image_file))
    if path.is_dir():  # OME-Zarr: its metadata lives in files inside; read it each time
        return voxel_size_nm(path)
    stat = path.stat()
    return _file_voxel_nm(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _file_voxel_nm(path: str, mtime_ns: int, size: int) -> tuple[float, float, float] | None:
    """One header read per file version: a job asks three times (two downsamples, the SCM)."""
    return voxel_size_nm(path)


def trained_ratio(trained_voxel_size: Any, trained_z_ratio: Any = None) -> float | None:
    """The training stack's Z/XY ratio: from ``trained_voxel_size`` ((Z, Y, X) nm) where set, else
    ``trained_z_ratio`` (a run trained on a stack of unknown voxel size), else None (unknown).

    Examples
    --------
    >>> trained_ratio([40, 5, 5]), trained_ratio(None, 8.3), trained_ratio(None, None)
    (8.0, 8.3, None)
    """
    if not _unset(trained_voxel_size):
        z, y, x = _trained_nm(trained_voxel_size)
        return z / max(y, x)
    if _unset(trained_z_ratio):
        return None
    return as_float(trained_z_ratio, "trained_z_ratio", minimum=0.01, maximum=1000.0)


def _trained_nm(trained_voxel_size: Any) -> tuple[float, float, float]:
    """A set ``trained_voxel_size`` as (z, y, x) nm; a one-line error naming the key otherwise."""
    try:
        return parse_voxel_size(trained_voxel_size)
    except InputError:
        raise InputError(f"trained_voxel_size must be [Z, Y, X] in nm (or null), got {trained_voxel_size!r}") from None


def _known(image_file: Any, voxel_size: Any, trained_voxel_size: Any, match: Any) -> tuple | None:
    """(input, trained) voxel sizes when matching is on and both are known, else None."""
    if not as_bool(match, "match_voxel_size") or _unset(trained_voxel_size):
        return None
    trained = _trained_nm(trained_voxel_size)
    given = input_voxel_nm(image_file, voxel_size)
    return None if given is None else (given, trained)


def matched_downsample(
    downsample: float,
    image_file: str | Path | None,
    voxel_size: Any = None,
    trained_voxel_size: Any = None,
    match: Any = True,
    name: str = "stage 1",
) -> float:
    """The downsample at which a network sees this input's pixels as it saw its training pixels.

    Parameters
    ----------
    downsample : float
        The trained downsample (>= 1).
    image_file : path or None
        The input stack; its recorded voxel size is read unless ``voxel_size`` is given.
    voxel_size : str, sequence or None
        The input's voxel size "Z,Y,X" in nm (overrides the file's).
    trained_voxel_size : sequence or None
        [Z, Y, X] nm of the training stack; None: unknown, nothing is changed.
    match : bool
        False: the trained downsample, whatever the voxel sizes.
    name : str
        Which network, for the log line.

    Returns
    -------
    float
        ``downsample * trained_xy / input_xy``, at least 1 (an input coarser than the network's
        pixels is not upsampled; a warning says so), or ``downsample`` unchanged.
    """
    downsample = as_float(downsample, f"{name} downsample", minimum=1.0)
    known = _known(image_file, voxel_size, trained_voxel_size, match)
    if known is None:
        return downsample
    given, trained = (0.5 * (v[1] + v[2]) for v in known)
    ratio = trained / given
    if abs(ratio - 1.0) < TOLERANCE:
        return downsample
    wanted, network_nm = downsample * ratio, trained * downsample
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


def scm_suits(
    use_scm: Any,
    image_file: str | Path | None,
    voxel_size: Any = None,
    trained_voxel_size: Any = None,
    match: Any = True,
    window: int = 15,
    trained_z_ratio: Any = None,
) -> bool:
    """``use_scm``, unless the input's sections are at least twice as thick as the training stack's.

    Then the SCM's ``window`` slices span depths it never saw; a warning names both spacings and
    the result is False (stage 1 alone). Where a voxel size is unknown, Z/XY ratios stand in
    (``_ratio_suits``): the input's from its voxel size or as estimated from its image, the
    training stack's from ``trained_z_ratio``. ``match`` false, or nothing known of the training
    stack, keep ``use_scm``.
    """
    wanted = as_bool(use_scm, "use_scm")
    if not wanted:
        return False
    known = _known(image_file, voxel_size, trained_voxel_size, match)
    if known is None:
        return _ratio_suits(image_file, voxel_size, trained_voxel_size, trained_z_ratio, match, window)
    z_in, z_trained = known[0][0], known[1][0]
    if z_in < SCM_MAX_Z_RATIO * z_trained:
        return True
    logger.warning(
        "the stack's %.3g nm sections are %.1fx the %.3g nm the SCM was trained on (its %d slices would span "
        "%.0f nm instead of %.0f nm): segmenting with stage 1 alone (--no-voxel-match, or match_voxel_size false, "
        "runs the SCM anyway)",
        z_in,
        z_in / z_trained,
        z_trained,
        int(window),
        z_in * int(window),
        z_trained * int(window),
    )
    return False


def _ratio_suits(
    image_file: Any, voxel_size: Any, trained_voxel_size: Any, trained_z_ratio: Any, match: Any, window: int
) -> bool:
    """False (with a warning) when the input is clearly thicker-sectioned than the training stack by
    their Z/XY ratios; True otherwise.

    Called where ``_known`` found no pair of sizes in nm. The input's ratio is its voxel size's
    where known, else its image's estimate (``io.anisotropy``); the training stack's is
    ``trained_ratio``'s. Either unknown, or ``match`` off: True.
    """
    from emseg_monai.io.anisotropy import image_anisotropy

    trained = trained_ratio(trained_voxel_size, trained_z_ratio)
    if not as_bool(match, "match_voxel_size") or trained is None:
        return True
    given = input_voxel_nm(image_file, voxel_size)
    if given is not None:  # the input's size is known, the training stack's only as a ratio
        ratio = given[0] / max(given[1], given[2])
        if ratio < SCM_MAX_Z_RATIO * trained:
            return True
        logger.warning(
            "the stack's sections are %.1fx its pixels, %.1fx the training stack's Z/XY of %.1f (a ratio the "
            "training run estimated or assumed, its voxel size unknown): segmenting with stage 1 alone "
            "(--no-voxel-match runs the SCM anyway)",
            ratio,
            ratio / trained,
            trained,
        )
        return False
    if image_file is None:
        return True
    estimate = image_anisotropy(image_file)
    thicker = thicker_than_trained(estimate, trained_voxel_size, trained_z_ratio)
    if thicker is None:
        return True
    logger.warning(
        "%s records no voxel size, and %s: segmenting with stage 1 alone (--voxel-size Z,Y,X sets the size; "
        "--no-voxel-match runs the SCM anyway)",
        Path(str(image_file)).name,
        thick_reason(estimate, thicker, int(window)),
    )
    return False


def thicker_than_trained(estimate: float | None, trained_voxel_size: Any, trained_z_ratio: Any = None) -> float | None:
    """How many times the training stack's sections the input's look, when that is too thick for the SCM.

    ``estimate`` is the input's Z/XY ratio as its image shows it (``io.anisotropy``; None: cannot
    tell). Returns ``estimate / trained Z/XY`` (``trained_ratio``) where the estimate is clearly
    anisotropic (``CLEARLY_ANISOTROPIC``) and at least ``SCM_MAX_Z_RATIO`` times the trained ratio,
    else None (the SCM suits, or nothing can be said: no estimate, training stack's ratio unknown).
    """
    from emseg_monai.io.anisotropy import CLEARLY_ANISOTROPIC

    trained = trained_ratio(trained_voxel_size, trained_z_ratio)
    if estimate is None or trained is None:
        return None
    if estimate < CLEARLY_ANISOTROPIC or estimate < SCM_MAX_Z_RATIO * trained:
        return None
    return float(estimate / trained)


def thick_reason(estimate: float, thicker: float, window: int) -> str:
    """The why of a stage-1-alone decision from the image's estimate, for warnings and status lines."""
    return (
        f"its neighbouring slices differ as much as pixels {estimate:.1f} apart within a slice: sections about "
        f"{thicker:.1f}x the training stack's, where the SCM's {window} slices would span depths it never saw"
    )


def z_smoothing_for(
    smoothing_z: Any,
    image_file: Any,
    trained_voxel_size: Any = None,
    match: Any = True,
    scm_downsample: Any = 1,
    use_scm: Any = True,
    smoothing: Any = None,
    trained_z_ratio: Any = None,
) -> float | None:
    """``smoothing_z`` as given, or 0.0 for an input of shifted sections segmented with a bundle
    trained on thick sections (Z/XY >= ``SCM_MAX_Z_RATIO``); None (``smoothing``'s sigma) otherwise.

    Only where ``smoothing_z`` is unset (null), ``use_scm`` and ``match`` are on, ``smoothing`` is not
    0 (nothing is smoothed; None: not known, as in run folders written before it existed), the
    training stack is known to be thick (``trained_on_thick_sections``), and ``image_file`` is a
    readable file or Zarr store: the upper quartile of its neighbouring-section shifts
    (``io.alignment.upper_shift_quartile``) above ``MISALIGNED_PX`` pixels at the SCM's resolution
    (``scm_downsample``: the matched one, as the SCM will run) turns the smoothing along Z off, with
    a warning that says so (``shifted_sections``; the napari plugin applies the same rule to a
    layer's array).
    """
    if not _unset(smoothing_z):
        return as_float(smoothing_z, "smoothing_z", minimum=0.0, maximum=8.0)
    if not as_bool(use_scm, "use_scm") or not as_bool(match, "match_voxel_size"):
        return None
    if not _unset(smoothing) and as_float(smoothing, "smoothing", minimum=0.0, maximum=8.0) == 0:
        return None
    if not trained_on_thick_sections(trained_voxel_size, trained_z_ratio):
        return None
    if _unset(image_file) or not Path(str(image_file)).exists():
        return None
    from emseg_monai.io.volumes import open_volume

    return 0.0 if shifted_sections(open_volume(image_file), scm_downsample) is not None else None


def trained_on_thick_sections(trained_voxel_size: Any, trained_z_ratio: Any = None) -> bool:
    """Whether a bundle's training stack is known to have Z/XY >= ``SCM_MAX_Z_RATIO`` (``trained_ratio``
    of its ``trained_voxel_size`` and ``trained_z_ratio``): the bundles whose smoothing along Z depends
    on the input's alignment."""
    ratio = trained_ratio(trained_voxel_size, trained_z_ratio)
    return ratio is not None and ratio >= SCM_MAX_Z_RATIO


def shifted_sections(volume: Any, scm_downsample: Any = 1, warn: bool = True) -> tuple[float, float] | None:
    """(quartile, limit) in image pixels where ``volume``'s neighbouring sections do not line up, else None.

    ``volume`` is any (Z, Y, X) array-like (a file's ``open_volume``, a napari layer's data: only
    central crops of a few slices are read). The upper quartile of its neighbouring-section shifts
    (``io.alignment.upper_shift_quartile``) is compared with ``MISALIGNED_PX`` pixels at the SCM's
    resolution (``scm_downsample``: the one the SCM will run at). With ``warn``, a shifted stack is
    logged as a warning that says the SCM's output is then smoothed in Y and X only.
    """
    from emseg_monai.io.alignment import shift_limit, upper_shift_quartile

    limit = shift_limit(as_float(scm_downsample, "scm_downsample", minimum=1.0))
    quartile = upper_shift_quartile(volume)
    if quartile <= limit:
        return None
    if warn:
        logger.warning(
            "a quarter of the stack's neighbouring sections are shifted by %.1f px or more (limit %g): the SCM's "
            "output is smoothed in Y and X only (smoothing_z 0; register the stack, or pass --smoothing-z to "
            "choose)",
            quartile,
            limit,
        )
    return quartile, limit
