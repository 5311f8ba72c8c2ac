"""Block-wise segmentation of volumes bigger than memory, in two passes over Z blocks.

The volume is cut into blocks of ``block`` slices along Z.

1. Stage 1 runs on each block (it is per slice) and writes uint8 probabilities to a scratch Zarr
   array beside the output (``<output>.blocks/stage1.zarr``).
2. The SCM runs on each block, reading the block's probabilities plus N//2 slices on each side
   (its halo), so every N-slice window is complete; at the volume's ends the end slice is repeated,
   as in whole-volume inference.

Intensities are normalised with the range of the whole volume, computed once from the subsample
``normalize_stack`` uses. So the masks equal those of whole-volume inference (``segment``); the
tests check it voxel for voxel. No stage-1 slice is computed twice.

Outputs: a Zarr array (one chunk per block; resumable: each finished block of each pass leaves a
marker in ``<output>.blocks/`` and a rerun with ``resume`` skips it) or a TIFF written page by page
to a temporary file renamed at the end. Memory: about one block plus the halo, not the volume.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emseg_monai.data.normalize import intensity_range
from emseg_monai.errors import InputError
from emseg_monai.inference.pipeline import scm, stage1, to_mask
from emseg_monai.io.stacks import TIFF_SUFFIXES, _suffix, atomic_write, check_output_path
from emseg_monai.io.volumes import create_zarr_output, is_zarr_path, open_volume, read_slices, record_settings
from emseg_monai.transforms.windows import check_window

logger = logging.getLogger(__name__)

STAGE1_KEYS = ("stage1_downsample", "batch_size", "device", "flips", "tile")
SCM_KEYS = ("window", "input_kind", "threshold", "scm_downsample", "batch_size", "device", "flips", "tile")


def block_ranges(n_slices: int, block: int) -> list[tuple[int, int]]:
    """[(z0, z1), ...] covering 0..n_slices in steps of ``block`` (the last may be shorter)."""
    if block < 1:
        raise InputError(f"block size must be at least 1 slice, got {block}")
    return [(z0, min(z0 + block, n_slices)) for z0 in range(0, n_slices, block)]


def stage1_block(
    volume: Any,
    z0: int,
    z1: int,
    value_range: tuple[float, float],
    network: torch.nn.Module,
    stage1_downsample: float = 1.0,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    flips: bool = False,
    tile: int = 1024,
) -> np.ndarray:
    """Stage-1 probabilities, uint8 0..255 (z1 - z0, Y, X), of slices [z0, z1) of a lazy volume."""
    image = read_slices(volume, z0, z1)
    return stage1(network, image, stage1_downsample, batch_size, device, flips, False, tile, value_range)


def scm_block(
    probs: Any,
    z0: int,
    z1: int,
    network: torch.nn.Module,
    window: int = 15,
    input_kind: str = "prob",
    threshold: float = 0.5,
    scm_downsample: float = 1.0,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    flips: bool = False,
    tile: int = 1024,
) -> np.ndarray:
    """uint8 0/255 mask (z1 - z0, Y, X) of slices [z0, z1) from the stage-1 probabilities ``probs``.

    ``probs`` is the whole (Z, Y, X) uint8 probability volume, lazily indexed (Zarr or numpy);
    only [z0 - N//2, z1 + N//2) is read.
    """
    halo = check_window(window) // 2
    lo, hi = max(z0 - halo, 0), min(z1 + halo, probs.shape[0])
    inner = np.arange(z0 - lo, z1 - lo)
    final = scm(
        network,
        np.asarray(probs[lo:hi]),
        window,
        input_kind,
        threshold,
        scm_downsample,
        batch_size,
        device,
        flips,
        False,
        tile,
        centers=inner,
    )
    return to_mask(final, threshold)


def _pick(options: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in options.items() if k in keys}


def block_probs(
    volume: Any, z0: int, z1: int, value_range, stage1_network: torch.nn.Module, options: dict
) -> np.ndarray:
    """Pass 1 of one block: its stage-1 probabilities (``stage1_block`` with the run's ``options``)."""
    return stage1_block(volume, z0, z1, value_range, stage1_network, **_pick(options, STAGE1_KEYS))


def block_mask(
    volume: Any,
    probs: Any,
    z0: int,
    z1: int,
    value_range,
    stage1_network: torch.nn.Module,
    scm_network: torch.nn.Module | None,
    options: dict,
) -> np.ndarray:
    """Pass 2 of one block: the SCM mask from ``probs``, or the stage-1 mask when there is no SCM."""
    if scm_network is None:
        return to_mask(block_probs(volume, z0, z1, value_range, stage1_network, options), options.get("threshold", 0.5))
    return scm_block(probs, z0, z1, scm_network, **_pick(options, SCM_KEYS))


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


def _marker(done_dir: Path, step: str, z0: int, z1: int) -> Path:
    return done_dir / f"{step}-{z0}-{z1}.json"


def _mark(path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text("{}"), overwrite=True)


def _run_local(
    volume,
    target,
    probs,
    done_dir,
    stage1_todo,
    todo,
    value_range,
    stage1_network,
    scm_network,
    options,
    progress,
    tiff,
) -> None:
    """The two passes in this process; ``tiff`` = (path, shape) streams the masks to a TIFF instead of ``target``."""
    final_step = "scm" if scm_network is not None else "stage1"
    bar = tqdm(total=len(stage1_todo) + len(todo), desc="blocks", unit="block", disable=None if progress else True)
    for z0, z1 in stage1_todo:  # pass 1: stage-1 probabilities
        probs[z0:z1] = block_probs(volume, z0, z1, value_range, stage1_network, options)
        _mark(_marker(done_dir, "stage1", z0, z1))
        bar.update(1)

    def masks():  # pass 2: SCM masks (or stage-1 masks when there is no SCM)
        for z0, z1 in todo:
            mask = block_mask(volume, probs, z0, z1, value_range, stage1_network, scm_network, options)
            if target is not None:
                target[z0:z1] = mask
                _mark(_marker(done_dir, final_step, z0, z1))
            bar.update(1)
            yield mask

    if tiff is None:
        for _ in masks():
            pass
    else:
        _write_tiff(tiff[0], tiff[1], masks())
    bar.close()


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
        Slices per block.
    overwrite, resume : bool
        An existing output is refused unless ``overwrite`` (start again) or ``resume`` (Zarr only:
        keep the finished blocks and do the rest).
    client : distributed.Client or None
        Run the blocks as tasks on this Dask cluster (Zarr output only; see
        ``emseg_monai.inference.distributed``).
    options
        window, input_kind, stage1_downsample, scm_downsample, threshold, batch_size, device, flips.

    Returns
    -------
    dict
        ``voxels``, ``seconds``, ``mvoxel_per_s`` (of the blocks done in this run), ``blocks``
        (done in this run), ``skipped``.
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
    if scm_network is not None:
        check_window(options.get("window", 15))
    ranges = block_ranges(shape[0], block)
    settings = {"image": str(image_file), "shape": list(shape), "block": block, "scm": scm_network is not None}
    settings.update({k: v for k, v in options.items() if k != "device"})
    settings = json.loads(json.dumps(settings, sort_keys=True))
    done_dir = Path(f"{out}.blocks")
    if resume and out.exists() and not done_dir.is_dir():
        logger.info("%s is complete: nothing to resume", out)
        return {"voxels": int(np.prod(shape)), "seconds": 0.0, "mvoxel_per_s": 0.0, "blocks": 0, "skipped": len(ranges)}
    if resume and done_dir.is_dir():
        recorded = json.loads((done_dir / "settings.json").read_text())
        if recorded != settings:
            raise InputError(f"cannot resume {out}: it was started with other settings ({done_dir / 'settings.json'})")
    else:
        if zarr_out and out.exists():
            shutil.rmtree(out)
        shutil.rmtree(done_dir, ignore_errors=True)
        done_dir.mkdir()
        record_settings(done_dir / "settings.json", settings)
    target = create_zarr_output(out, shape, block, resume=resume and out.exists()) if zarr_out else None
    probs = None
    if scm_network is not None:
        probs = create_zarr_output(done_dir / "stage1.zarr", shape, block, resume=(done_dir / "stage1.zarr").exists())
    value_range = intensity_range(volume)
    final_step = "scm" if scm_network is not None else "stage1"
    todo = [(z0, z1) for z0, z1 in ranges if not _marker(done_dir, final_step, z0, z1).exists()]
    stage1_todo = [] if probs is None else [r for r in ranges if not _marker(done_dir, "stage1", *r).exists()]
    start = time.perf_counter()
    try:
        if client is not None:
            from emseg_monai.inference.distributed import submit_blocks

            submit_blocks(
                client,
                image_file,
                out,
                done_dir,
                stage1_todo,
                todo,
                value_range,
                stage1_network,
                scm_network,
                options,
                progress,
            )
        else:
            _run_local(
                volume,
                target,
                probs,
                done_dir,
                stage1_todo,
                todo,
                value_range,
                stage1_network,
                scm_network,
                options,
                progress,
                None if zarr_out else (out, shape),
            )
    except BaseException:
        if not zarr_out:  # a TIFF run cannot resume: drop its scratch files
            shutil.rmtree(done_dir, ignore_errors=True)
        raise
    shutil.rmtree(done_dir, ignore_errors=True)
    seconds = time.perf_counter() - start
    done_voxels = sum(z1 - z0 for z0, z1 in todo) * shape[1] * shape[2]
    stats = {
        "voxels": int(np.prod(shape)),
        "seconds": seconds,
        "mvoxel_per_s": done_voxels / max(seconds, 1e-9) / 1e6,
        "blocks": len(todo),
        "skipped": len(ranges) - len(todo),
    }
    logger.info("segmented %s %s block-wise in %.1f s -> %s", image_file, shape, seconds, out)
    return stats
