"""Training targets of the SCM: stage-1 inference over the training stack, then MPP.

Arrays are (Z, Y, X); stage-1 probabilities are stored as uint8 0..255 and masks as uint8 0/255.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from emseg_monai.data.normalize import intensity_range
from emseg_monai.data.slices import parse_slice_spec
from emseg_monai.inference.settings import InferenceSettings
from emseg_monai.inference.stages import stage1, to_mask
from emseg_monai.io.stacks import read_mask, read_stack, write_stack
from emseg_monai.transforms.mpp import mpp

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
    **mpp_kwargs,
) -> Path:
    """MPP over a stage-1 mask stack file with the labeled slices' ground truth; writes the targets."""
    mask = read_mask(mask_file)
    labels = read_mask(label_file, shape=mask.shape)
    labeled = parse_slice_spec(labeled_slices, mask.shape[0])
    Path(output_file).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    targets = mpp(mask, labels, labeled, **mpp_kwargs)
    logger.info("MPP on %s took %.1f s", mask.shape, time.perf_counter() - start)
    return write_stack(output_file, targets)
