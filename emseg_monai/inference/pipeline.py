"""Whole-stack jobs: stage-1 inference, MPP, and segmentation of a new stack (stage 1 then SCM).

These are the functions the bundle configs call. Arrays are (Z, Y, X); stage-1 probabilities are
stored as uint8 0..255 and masks as uint8 0/255.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from emseg_monai.data.normalize import intensity_range, normalize_stack
from emseg_monai.data.slices import parse_slice_spec
from emseg_monai.data.training import scm_inputs
from emseg_monai.errors import InputError
from emseg_monai.inference.predict import predict_stack
from emseg_monai.io.stacks import check_output_path, read_mask, read_stack, write_stack
from emseg_monai.transforms.mpp import mpp

logger = logging.getLogger(__name__)


def _output_dir(output_dir: str | Path) -> Path:
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def stage1(
    network: torch.nn.Module,
    image: np.ndarray,
    downsample: float = 1.0,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    flips: bool = False,
    progress: bool = True,
    tile: int = 1024,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Stage-1 probabilities (Z, Y, X) uint8 0..255 of a raw (Z, Y, X) image stack of any dtype.

    ``value_range`` is the intensity range mapped to [0, 1] (default: the stack's own percentiles;
    block-wise inference passes the whole volume's).
    """
    value_range = intensity_range(image) if value_range is None else value_range
    return predict_stack(
        network,
        image,
        1,
        downsample,
        batch_size,
        device,
        flips,
        "stage 1",
        progress,
        tile=tile,
        prepare=partial(normalize_stack, value_range=value_range),
    )


def scm(
    network: torch.nn.Module,
    prob: np.ndarray,
    window: int = 15,
    input_kind: str = "prob",
    threshold: float = 0.5,
    downsample: float = 1.0,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    flips: bool = False,
    progress: bool = True,
    tile: int = 1024,
    centers: np.ndarray | None = None,
) -> np.ndarray:
    """SCM probabilities (Z, Y, X) uint8 0..255 from stage-1 probabilities (uint8 0..255).

    With ``centers``, only those slices (their windows still read the neighbours in ``prob``).
    A bad ``input_kind`` fails on the first 16 slices' preparation, before any network pass.
    """
    prepare = partial(scm_inputs, input_kind=input_kind, threshold=threshold)
    return predict_stack(
        network,
        prob,
        window,
        downsample,
        batch_size,
        device,
        flips,
        "SCM",
        progress,
        centers=centers,
        tile=tile,
        prepare=prepare,
    )


def to_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """uint8 0/255 mask from uint8 0..255 probabilities: probability >= ``threshold``."""
    return (prob >= np.float32(threshold) * 255).astype(np.uint8) * np.uint8(255)


def run_stage1(
    network: torch.nn.Module,
    image_file: str | Path,
    output_dir: str | Path,
    downsample: float = 1.0,
    batch_size: int = 4,
    threshold: float = 0.5,
    flips: bool = False,
    device: str | torch.device = "cpu",
    prob_name: str = "stage1_prob.tif",
    mask_name: str = "stage1_mask.tif",
) -> dict[str, Path]:
    """Stage-1 inference over a stack file; writes the probability and mask stacks to ``output_dir``."""
    image = read_stack(image_file)
    out = _output_dir(output_dir)
    start = time.perf_counter()
    prob = stage1(network, image, downsample, batch_size, device, flips)
    paths = {"prob": write_stack(out / prob_name, prob), "mask": write_stack(out / mask_name, to_mask(prob, threshold))}
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
    _output_dir(Path(output_file).parent)
    start = time.perf_counter()
    targets = mpp(mask, labels, labeled, **mpp_kwargs)
    logger.info("MPP on %s took %.1f s", mask.shape, time.perf_counter() - start)
    return write_stack(output_file, targets)


def segment(
    image: np.ndarray,
    stage1_network: torch.nn.Module,
    scm_network: torch.nn.Module | None,
    window: int = 15,
    input_kind: str = "prob",
    stage1_downsample: float = 1.0,
    scm_downsample: float = 1.0,
    threshold: float = 0.5,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    flips: bool = False,
    progress: bool = True,
    tile: int = 1024,
) -> dict[str, np.ndarray]:
    """Segment a raw (Z, Y, X) stack: stage 1, then the SCM (skipped when ``scm_network`` is None).

    Returns
    -------
    dict
        ``stage1_prob`` and ``final_prob`` (uint8 0..255), ``final_mask`` (uint8 0/255), all
        (Z, Y, X) with the image's shape.
    """
    prob1 = stage1(stage1_network, image, stage1_downsample, batch_size, device, flips, progress, tile)
    final = prob1
    if scm_network is not None:
        final = scm(
            scm_network, prob1, window, input_kind, threshold, scm_downsample, batch_size, device, flips, progress, tile
        )
    return {"stage1_prob": prob1, "final_prob": final, "final_mask": to_mask(final, threshold)}


def wants_blocks(
    image_file: str | Path,
    output_file: str | Path,
    block_size: int | None = 0,
    resume: bool = False,
    workers: int | None = 0,
    scheduler: str | None = None,
) -> bool:
    """Whether ``run_segment`` goes block-wise: a block size, resume, Dask, or a .zarr input/output."""
    from emseg_monai.io.volumes import is_zarr_path

    extra = bool(block_size) or resume or bool(workers) or bool(scheduler)
    return extra or is_zarr_path(image_file) or is_zarr_path(output_file)


def run_segment(
    image_file: str | Path,
    output_file: str | Path,
    stage1_network: torch.nn.Module,
    scm_network: torch.nn.Module | None,
    overwrite: bool = True,
    save_stage1: bool = False,
    block_size: int = 0,
    resume: bool = False,
    workers: int = 0,
    scheduler: str | None = None,
    **kwargs,
) -> Path:
    """Segment a stack file and write the final uint8 0/255 mask stack (``segment`` for options).

    With ``save_stage1`` the stage-1 probabilities and masks are written beside the output as
    ``<name>_stage1_prob.tif`` and ``<name>_stage1_mask.tif``. With ``block_size`` > 0, or a
    ``.zarr`` input or output, the volume is processed block by block
    (``emseg_monai.inference.blockwise``; default block 32 slices), never whole in memory.
    ``workers`` (a local Dask cluster) or ``scheduler`` (a running one) spread the blocks over
    Dask workers (Zarr output).
    """
    from emseg_monai.io.volumes import is_zarr_path

    dask = bool(workers) or bool(scheduler)
    if wants_blocks(image_file, output_file, block_size, resume, workers, scheduler):
        from emseg_monai.inference.blockwise import run_segment_blocks

        if save_stage1:
            raise InputError("save_stage1 is not available block-wise (use a TIFF input and output, no block size)")
        if dask and not is_zarr_path(output_file):
            raise InputError(f"a Dask cluster writes Zarr: the output must end in .zarr, got {output_file}")
        client = None
        if dask:
            from emseg_monai.inference.distributed import connect

            client = connect(workers or None, scheduler)
        try:
            run_segment_blocks(
                image_file,
                output_file,
                stage1_network,
                scm_network,
                block=block_size or 32,
                overwrite=overwrite,
                resume=resume,
                client=client,
                **{k: v for k, v in kwargs.items() if k != "progress"},
            )
        finally:
            if client is not None:
                cluster = client.cluster if not scheduler else None
                client.close()
                if cluster is not None:
                    cluster.close()
        return Path(output_file)
    check_output_path(output_file, overwrite=overwrite)
    image = read_stack(image_file)
    start = time.perf_counter()
    result = segment(image, stage1_network, scm_network, **kwargs)
    elapsed = time.perf_counter() - start
    path = write_stack(output_file, result["final_mask"], overwrite=overwrite)
    if save_stage1:
        stem = Path(output_file).name.split(".")[0]
        folder = Path(output_file).parent
        write_stack(folder / f"{stem}_stage1_prob.tif", result["stage1_prob"], overwrite=overwrite)
        write_stack(
            folder / f"{stem}_stage1_mask.tif",
            to_mask(result["stage1_prob"], kwargs.get("threshold", 0.5)),
            overwrite=overwrite,
        )
    logger.info(
        "segmented %s %s in %.1f s (%.2f Mvoxel/s) -> %s",
        image_file,
        image.shape,
        elapsed,
        image.size / elapsed / 1e6,
        path,
    )
    return path
