"""File in, file out: segment stack files whole (through a MONAI evaluator) or block by block.

``SegmentJob`` is what ``inference.yaml`` runs. Ordinary stacks go through the bundle's
``SupervisedEvaluator`` (load, normalise, ``StackInferer``, threshold, write), the MONAI shape
every bundle tool knows. Volumes that should not be held in memory (a ``.zarr`` input or output,
a block size, resume, Dask) go through ``segment_blocks``: two passes over Z blocks, locally or on
a Dask cluster, with the same networks and settings, and masks equal to the whole-volume ones.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emseg_monai.data.normalize import intensity_range
from emseg_monai.errors import EnvironmentFault, InputError
from emseg_monai.inference.block import BlockPlan, block_ranges, marker
from emseg_monai.inference.inferer import StackInferer
from emseg_monai.inference.local import run_local
from emseg_monai.inference.settings import InferenceSettings
from emseg_monai.io.stacks import TIFF_SUFFIXES, _suffix, check_output_path, check_stack_output
from emseg_monai.io.volumes import create_zarr_output, is_zarr_path, open_volume, record_settings
from emseg_monai.options import as_bool, as_int

logger = logging.getLogger(__name__)

DEFAULT_BLOCK = 32


def wants_blocks(
    image_file: str | Path,
    output_file: str | Path,
    block_size: int | None = 0,
    resume: bool = False,
    workers: int | None = 0,
    scheduler: str | None = None,
) -> bool:
    """Whether a job goes block-wise: a block size, resume, Dask, or a .zarr input/output."""
    extra = bool(block_size) or bool(resume) or bool(workers) or bool(scheduler)
    return extra or is_zarr_path(image_file) or is_zarr_path(output_file)


class SegmentJob:
    """Segment every ``{"image": ..., "output": ...}`` item of ``data`` and write uint8 0/255 masks.

    Inputs are checked and outputs refused (unless ``overwrite``) before any network runs.

    Parameters
    ----------
    data : list of dict
        The bundle's ``datalist``: image stack paths (TIFF, NIfTI, Zarr) and output paths (TIFF,
        NIfTI, Zarr), (Z, Y, X).
    evaluator : monai.engines.Evaluator
        Runs whole-volume segmentation over the same ``data`` (its postprocessing writes the outputs).
    network : torch.nn.Module
        The stage-1 network (the evaluator's); the inferer holds the SCM.
    inferer : StackInferer
        Stage 1 + SCM with the run's ``InferenceSettings``.
    overwrite, resume : bool
        Replace existing outputs; finish an interrupted block-wise run into a Zarr output.
    block_size : int
        > 0: block-wise, this many slices per block (0: whole volume unless Zarr/resume/Dask).
    workers : int
        > 0: block-wise on a local Dask cluster of this many processes.
    scheduler : str or None
        Block-wise on the running Dask scheduler at this address.
    """

    def __init__(
        self,
        data: Iterable[Mapping[str, Any]],
        evaluator: Any,
        network: torch.nn.Module,
        inferer: StackInferer,
        overwrite: Any = True,
        block_size: Any = 0,
        resume: Any = False,
        workers: Any = 0,
        scheduler: str | None = None,
        progress: bool = True,
    ) -> None:
        self.data = list(data)
        self.evaluator = evaluator
        self.network = network
        self.inferer = inferer
        self.overwrite = as_bool(overwrite, "overwrite")
        self.resume = as_bool(resume, "resume")
        self.block_size = as_int(block_size or 0, "block_size", minimum=0)
        self.workers = as_int(workers or 0, "dask_workers", minimum=0)
        self.scheduler = scheduler or None
        self.progress = progress

    def blockwise(self) -> bool:
        """Whether this job streams its volumes block by block (see ``wants_blocks``)."""
        return any(
            wants_blocks(i["image"], i["output"], self.block_size, self.resume, self.workers, self.scheduler)
            for i in self.data
        )

    def run(self) -> list[dict[str, Any]]:
        """Segment every item; returns per item ``image``, ``output``, ``shape``, ``seconds``, ``mvoxel_per_s``."""
        if not self.data:
            raise InputError("nothing to segment: the datalist is empty")
        shapes = [tuple(int(s) for s in open_volume(item["image"]).shape) for item in self.data]
        if self.blockwise():
            return [self._run_blocks(item, shape) for item, shape in zip(self.data, shapes)]
        for item in self.data:
            check_stack_output(item["output"])  # before any work, not when the evaluator writes
            check_output_path(item["output"], overwrite=self.overwrite)
        start = time.perf_counter()
        with _disk_faults("the output"):
            self.evaluator.run()
        seconds = time.perf_counter() - start
        stats = [_stats(item, shape, seconds / len(self.data)) for item, shape in zip(self.data, shapes)]
        for entry in stats:
            logger.info(
                "segmented %s %s in %.1f s (%.2f Mvoxel/s) -> %s",
                entry["image"],
                entry["shape"],
                entry["seconds"],
                entry["mvoxel_per_s"],
                entry["output"],
            )
        return stats

    def _run_blocks(self, item: Mapping[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
        if self.inferer.settings.keep_stage1:
            raise InputError("save_stage1 is not available block-wise (use a TIFF input and output, no block size)")
        client = None
        if self.workers or self.scheduler:
            from emseg_monai.inference.distributed import connect

            if not is_zarr_path(item["output"]):
                raise InputError(f"a Dask cluster writes Zarr: the output must end in .zarr, got {item['output']}")
            client = connect(self.workers or None, self.scheduler)
        try:
            result = segment_blocks(
                item["image"],
                item["output"],
                self.inferer.networks(self.network),
                self.inferer.settings,
                block=self.block_size or DEFAULT_BLOCK,
                overwrite=self.overwrite,
                resume=self.resume,
                client=client,
                progress=self.progress,
            )
        finally:
            if client is not None:
                from emseg_monai.inference.distributed import disconnect

                disconnect(client, own_cluster=not self.scheduler)
        return {**_stats(item, shape, result["seconds"]), **result}


def _stats(item: Mapping[str, Any], shape: tuple[int, ...], seconds: float) -> dict[str, Any]:
    voxels = int(np.prod(shape))
    return {
        "image": str(item["image"]),
        "output": str(item["output"]),
        "shape": shape,
        "voxels": voxels,
        "seconds": seconds,
        "mvoxel_per_s": voxels / max(seconds, 1e-9) / 1e6,
    }


class _disk_faults:
    """Turn 'no space left' / 'quota exceeded' while writing into one-line ``EnvironmentFault``s."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        cause = exc
        while cause is not None and not (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise EnvironmentFault(f"no space left on the device writing {self.what}: {cause}") from exc
        return False


def _write_tiff(path: Path, shape: tuple[int, int, int], masks: Iterable[np.ndarray]) -> None:
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


def segment_blocks(
    image_file: str | Path,
    output_file: str | Path,
    networks: tuple[torch.nn.Module, torch.nn.Module | None],
    settings: InferenceSettings,
    block: int = DEFAULT_BLOCK,
    overwrite: bool = False,
    resume: bool = False,
    client: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment a volume file block by block; write a Zarr array or a TIFF (uint8 0/255, (Z, Y, X)).

    Parameters
    ----------
    image_file : str or Path
        TIFF, NIfTI or Zarr (a plain array, or level 0 of an OME-Zarr multiscale image).
    output_file : str or Path
        ``.zarr`` (resumable; one chunk per block) or ``.tif``/``.tiff`` (written page by page to a
        temporary file renamed at the end).
    networks : (stage 1, SCM or None)
        Ready to run (``StackInferer.networks``); no SCM: the stage-1 masks are final.
    settings : InferenceSettings
        As for whole-volume inference; the masks equal whole-volume ones voxel for voxel.
    block : int
        Slices per block.
    overwrite, resume : bool
        An existing output is refused unless ``overwrite`` (start again) or ``resume`` (Zarr only:
        keep the finished blocks, marked in ``<output>.blocks/``, and do the rest).
    client : distributed.Client or None
        Run the blocks as tasks on this Dask cluster (Zarr output only; ``distributed.run_dask``).

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
    if networks[1] is None:
        settings = settings.replace(use_scm=False)
    ranges = block_ranges(shape[0], block)
    record = {"image": str(image_file), "shape": list(shape), "block": block, "scm": networks[1] is not None}
    record = json.loads(json.dumps({**record, **settings.record()}, sort_keys=True))
    done_dir = Path(f"{out}.blocks")
    if resume and out.exists() and not done_dir.is_dir():
        logger.info("%s is complete: nothing to resume", out)
        return {"voxels": int(np.prod(shape)), "seconds": 0.0, "mvoxel_per_s": 0.0, "blocks": 0, "skipped": len(ranges)}
    if resume and done_dir.is_dir():
        recorded = json.loads((done_dir / "settings.json").read_text())
        before_smoothing = "smoothing" not in recorded  # started by emseg-monai < 0.8.6: no smoothing then
        recorded.setdefault("smoothing", 0.0)
        recorded.setdefault("smoothing_z", recorded["smoothing"])  # emseg-monai < 0.8.9: one sigma in all axes
        recorded.setdefault("stage1_flips", False)  # emseg-monai < 0.8.11: stage 1 once where the SCM follows
        if recorded != record:
            hint = "; it predates the smoothing: resume with smoothing 0" if before_smoothing else ""
            raise InputError(
                f"cannot resume {out}: it was started with other settings ({done_dir / 'settings.json'}{hint})"
            )
    else:
        if zarr_out and out.exists():
            shutil.rmtree(out)
        shutil.rmtree(done_dir, ignore_errors=True)
        done_dir.mkdir()
        record_settings(done_dir / "settings.json", record)
    target = create_zarr_output(out, shape, block, resume=resume and out.exists()) if zarr_out else None
    probs = None
    if networks[1] is not None:
        scratch = done_dir / "stage1.zarr"
        probs = create_zarr_output(scratch, shape, block, resume=scratch.exists())
    value_range = intensity_range(volume)
    final_step = "scm" if networks[1] is not None else "stage1"
    todo = [(z0, z1) for z0, z1 in ranges if not marker(done_dir, final_step, z0, z1).exists()]
    stage1_todo = [] if probs is None else [r for r in ranges if not marker(done_dir, "stage1", *r).exists()]
    plan = BlockPlan(done_dir, stage1_todo, todo, value_range)
    start = time.perf_counter()
    try:
        with _disk_faults(str(out)):
            if client is not None:
                from emseg_monai.inference.distributed import run_dask

                run_dask(client, image_file, out, plan, networks, settings, progress)
            else:
                masks = run_local(volume, probs, target, plan, networks, settings, progress)
                if zarr_out:
                    for _ in masks:
                        pass
                else:
                    _write_tiff(out, shape, masks)
    except BaseException:
        if not zarr_out:  # a TIFF run cannot resume: drop its scratch files
            shutil.rmtree(done_dir, ignore_errors=True)
        raise
    shutil.rmtree(done_dir, ignore_errors=True)
    seconds = time.perf_counter() - start
    done_voxels = sum(z1 - z0 for z0, z1 in todo) * shape[1] * shape[2]
    logger.info("segmented %s %s block-wise in %.1f s -> %s", image_file, shape, seconds, out)
    return {
        "voxels": int(np.prod(shape)),
        "seconds": seconds,
        "mvoxel_per_s": done_voxels / max(seconds, 1e-9) / 1e6,
        "blocks": len(todo),
        "skipped": len(ranges) - len(todo),
    }
