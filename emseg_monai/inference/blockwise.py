"""Block-wise segmentation of volumes bigger than memory: Z blocks with the halo the SCM needs.

The volume is cut into blocks of ``block`` slices along Z. For a block [z0, z1) stage 1 runs on
[z0 - N//2, z1 + N//2) (clipped to the volume) and the SCM on the block's slices, whose N-slice
windows then lie inside what was computed; at the volume's ends the end slice is repeated, as in
whole-volume inference. Intensities are normalised with the range of the whole volume, computed
once from the same subsample ``normalize_stack`` uses. So each block's mask equals the mask of
whole-volume inference (``segment``), up to rare one-step differences of the uint8 probabilities
that batching may cause.

Outputs: a Zarr array (one chunk per block; resumable: a finished block leaves a marker in
``<output>.blocks/`` and a rerun with ``resume`` skips it) or a TIFF written page by page to a
temporary file renamed at the end. Memory: one block plus its halo, not the volume.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emseg_monai.data.normalize import intensity_range, normalize_stack
from emseg_monai.data.training import scm_inputs
from emseg_monai.errors import InputError
from emseg_monai.inference.pipeline import to_mask
from emseg_monai.inference.predict import predict_stack
from emseg_monai.io.stacks import TIFF_SUFFIXES, _suffix, atomic_write, check_output_path
from emseg_monai.io.volumes import create_zarr_output, is_zarr_path, open_volume, record_settings
from emseg_monai.transforms.windows import check_window

logger = logging.getLogger(__name__)


def block_ranges(n_slices: int, block: int) -> list[tuple[int, int]]:
    """[(z0, z1), ...] covering 0..n_slices in steps of ``block`` (the last may be shorter)."""
    if block < 1:
        raise InputError(f"block size must be at least 1 slice, got {block}")
    return [(z0, min(z0 + block, n_slices)) for z0 in range(0, n_slices, block)]


def segment_block(
    volume: Any,
    z0: int,
    z1: int,
    value_range: tuple[float, float],
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
) -> np.ndarray:
    """uint8 0/255 mask (z1 - z0, Y, X) of slices [z0, z1) of a lazy (Z, Y, X) ``volume``."""
    n = volume.shape[0]
    halo = check_window(window) // 2 if scm_network is not None else 0
    lo, hi = max(z0 - halo, 0), min(z1 + halo, n)
    image = normalize_stack(np.asarray(volume[lo:hi]), value_range)
    prob1 = predict_stack(stage1_network, image, 1, stage1_downsample, batch_size, device, flips, progress=False)
    inner = np.arange(z0 - lo, z1 - lo)
    if scm_network is None:
        return to_mask(prob1[inner], threshold)
    inputs = scm_inputs(prob1, input_kind, threshold)
    final = predict_stack(
        scm_network, inputs, window, scm_downsample, batch_size, device, flips, progress=False, centers=inner
    )
    return to_mask(final, threshold)


def _write_tiff(path: Path, shape: tuple[int, int, int], masks: Any) -> None:
    """Write the (Z, Y, X) uint8 pages yielded block by block by ``masks`` as one TIFF series.

    The pages go to a temporary file beside ``path``, renamed over it only when all are written.
    """
    import tifffile

    tmp = path.with_name(f".{path.name}.partial{_suffix(path)}")
    pages = (page for mask in masks for page in mask)
    try:
        with tifffile.TiffWriter(str(tmp), bigtiff=True) as writer:
            writer.write(pages, shape=shape, dtype=np.uint8, compression="zlib", photometric="minisblack")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def run_segment_blocks(
    image_file: str | Path,
    output_file: str | Path,
    stage1_network: torch.nn.Module,
    scm_network: torch.nn.Module | None,
    block: int = 32,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    client: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Segment a volume file block by block; write a Zarr array or a TIFF (uint8 0/255, (Z, Y, X)).

    Parameters
    ----------
    image_file : str or Path
        TIFF, NIfTI or Zarr (a plain array, or level 0 of an OME-Zarr multiscale image).
    output_file : str or Path
        ``.zarr`` (resumable) or ``.tif``/``.tiff``.
    block : int
        Slices per block; memory is about 15 bytes per voxel of one block plus its 2 x N//2 halo.
    overwrite, resume : bool
        An existing output is refused unless ``overwrite`` (start again) or ``resume`` (Zarr only:
        keep the finished blocks and do the rest).
    client : distributed.Client or None
        Run the blocks as tasks on this Dask cluster (Zarr output only; see
        ``emseg_monai.inference.distributed``).
    options
        ``segment_block`` options: window, input_kind, downsamples, threshold, batch_size,
        device, flips.

    Returns
    -------
    dict
        ``voxels``, ``seconds``, ``mvoxel_per_s``, ``blocks`` (done in this run), ``skipped``.
    """
    volume = open_volume(image_file)
    shape = tuple(int(s) for s in volume.shape)
    out = Path(output_file)
    zarr_out = is_zarr_path(out)
    if not zarr_out and _suffix(out) not in TIFF_SUFFIXES:
        raise InputError(f"block-wise output must be .zarr, .tif or .tiff, got {out}")
    if resume and not zarr_out:
        raise InputError(f"resume needs a Zarr output (.zarr), got {out}")
    if client is not None and not zarr_out:
        raise InputError(f"a Dask cluster writes Zarr: the output must end in .zarr, got {out}")
    if out.exists() and not (overwrite or resume):
        raise InputError(f"output exists: {out} (pass --overwrite to replace it or --resume to finish it)")
    if not out.parent.is_dir():
        raise InputError(f"output folder does not exist: {out.parent}")
    if not zarr_out:
        check_output_path(out, overwrite=True)
    ranges = block_ranges(shape[0], block)
    settings = {
        "image": str(image_file),
        "shape": list(shape),
        "block": block,
        "scm": scm_network is not None,
        **{k: v for k, v in options.items() if k != "device"},
    }
    done_dir = Path(f"{out}.blocks")
    done: set[int] = set()
    if resume and out.exists() and not done_dir.is_dir():
        logger.info("%s is complete: nothing to resume", out)
        return {"voxels": int(np.prod(shape)), "seconds": 0.0, "mvoxel_per_s": 0.0, "blocks": 0, "skipped": len(ranges)}
    if zarr_out:
        if resume and done_dir.is_dir():
            import json

            recorded = json.loads((done_dir / "settings.json").read_text())
            if recorded != json.loads(json.dumps(settings, sort_keys=True)):
                raise InputError(
                    f"cannot resume {out}: it was started with other settings ({done_dir / 'settings.json'})"
                )
            done = {int(p.name.split("-")[0]) for p in done_dir.glob("*-*.json")}
        else:
            if out.exists():
                shutil.rmtree(out)
            shutil.rmtree(done_dir, ignore_errors=True)
            done_dir.mkdir()
            record_settings(done_dir / "settings.json", settings)
        target = create_zarr_output(out, shape, block, resume=resume and out.exists())

        def write_block(z0: int, z1: int, mask: np.ndarray) -> None:
            target[z0:z1] = mask
            atomic_write(done_dir / f"{z0}-{z1}.json", lambda tmp: tmp.write_text("{}"), overwrite=True)

    value_range = intensity_range(volume)
    start = time.perf_counter()
    todo = [(z0, z1) for z0, z1 in ranges if z0 not in done]

    def masks():
        for z0, z1 in tqdm(todo, desc="blocks", unit="block", disable=None if progress else True):
            mask = segment_block(volume, z0, z1, value_range, stage1_network, scm_network, **options)
            if zarr_out:
                write_block(z0, z1, mask)
            yield mask

    if client is not None:
        from emseg_monai.inference.distributed import submit_blocks

        submit_blocks(
            client, image_file, out, done_dir, todo, value_range, stage1_network, scm_network, options, progress
        )
        shutil.rmtree(done_dir, ignore_errors=True)
    elif zarr_out:
        for _ in masks():
            pass
        shutil.rmtree(done_dir, ignore_errors=True)
    else:
        _write_tiff(out, shape, masks())
    count = len(todo)
    seconds = time.perf_counter() - start
    voxels = int(np.prod(shape))
    done_voxels = sum((z1 - z0) for z0, z1 in todo) * shape[1] * shape[2]
    stats = {
        "voxels": voxels,
        "seconds": seconds,
        "mvoxel_per_s": done_voxels / max(seconds, 1e-9) / 1e6,
        "blocks": count,
        "skipped": len(ranges) - len(todo),
    }
    logger.info("segmented %s %s block-wise in %.1f s -> %s", image_file, shape, seconds, out)
    return stats
