"""Training targets of the SCM: stage-1 inference over the training stack, then MPP.

Arrays are (Z, Y, X); stage-1 probabilities are stored as uint8 0..255 and masks as uint8 0/255.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from emseg_monai.data.normalize import intensity_range
from emseg_monai.data.slices import parse_slice_spec
from emseg_monai.inference.settings import InferenceSettings
from emseg_monai.inference.stages import stage1, to_mask
from emseg_monai.io.stacks import atomic_write, read_mask, read_stack, write_stack
from emseg_monai.options import as_bool, as_float
from emseg_monai.training.mpp_check import MARGIN, candidate_settings, check_mpp
from emseg_monai.transforms.mpp import mpp, z_steps

logger = logging.getLogger(__name__)


def run_stage1(
    network: torch.nn.Module,
    image_file: str | Path,
    output_dir: str | Path,
    settings: InferenceSettings,
    prob_name: str = "stage1_prob.tif",
    mask_name: str = "stage1_mask.tif",
) -> dict[str, Path]:
    """Stage-1 inference over a stack file; writes the probability and mask stacks to ``output_dir``."""
    image = read_stack(image_file)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    prob = stage1(network, image, settings, intensity_range(image))
    mask = to_mask(prob, settings.threshold)
    paths = {"prob": write_stack(out / prob_name, prob), "mask": write_stack(out / mask_name, mask)}
    logger.info("stage 1 on %s %s took %.1f s; wrote %s", image_file, image.shape, time.perf_counter() - start, out)
    return paths


def run_mpp(
    mask_file: str | Path,
    label_file: str | Path,
    labeled_slices: str | list[int],
    output_file: str | Path,
    check: bool = False,
    check_margin: float = MARGIN,
    report_file: str | Path | None = None,
    **mpp_kwargs,
) -> Path:
    """MPP over a stage-1 mask stack file with the labeled slices' ground truth; writes the targets.

    With ``check``, first compares stage 1 and the MPP candidates on inner labeled slices hidden
    from MPP (``mpp_check.check_mpp``), builds the targets with the best candidate, and writes the
    figures and the decision (``use_scm``) as JSON to ``report_file`` (when given).
    """
    checked = as_bool(check, "check")
    margin = as_float(check_margin, "check_margin", minimum=-1.0, maximum=1.0)
    mask = read_mask(mask_file)
    labels = read_mask(label_file, shape=mask.shape)
    labeled = parse_slice_spec(labeled_slices, mask.shape[0])
    Path(output_file).parent.mkdir(parents=True, exist_ok=True)
    candidates = candidate_settings(mpp_kwargs)
    start = time.perf_counter()
    if checked:
        result = check_mpp(mask, labels, labeled, candidates, margin)
        logger.info("MPP check (%.1f s): %s", time.perf_counter() - start, result["reason"])
    else:
        result = {"checked": False, "choice": "mpp", "use_scm": True, "reason": "not checked (check: false)"}
    settings = candidates[result["choice"]]
    if report_file is not None:
        keys = ("anisotropy", "erosions_per_step", "vote_distances", "vote_reach", "bracket_reach")
        steps = z_steps(**{k: settings[k] for k in keys if k in settings})  # mpp's own defaults for the rest
        report = {**result, "settings": _jsonable(settings), "z_steps": steps}
        atomic_write(report_file, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    targets = mpp(mask, labels, labeled, **settings)
    logger.info("MPP (%s) on %s took %.1f s", result["choice"], mask.shape, time.perf_counter() - start)
    return write_stack(output_file, targets)


def finish_stack(
    final_file: str | Path,
    label_file: str | Path,
    labeled_slices: str | list[int],
    output_file: str | Path,
    settings: dict | None = None,
) -> Path:
    """The training stack finished with everything known: MPP of the final masks with the labeled slices.

    Labeled slices take their ground truth exactly; their neighbours get its spread and the votes of
    ``settings`` (the MPP keyword arguments the run chose; default: MPP's defaults).
    """
    final = read_mask(final_file)
    labels = read_mask(label_file, shape=final.shape)
    labeled = parse_slice_spec(labeled_slices, final.shape[0])
    return write_stack(output_file, mpp(final, labels, labeled, **(settings or {})))


def _jsonable(settings: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
