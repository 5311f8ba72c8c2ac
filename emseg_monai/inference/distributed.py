"""Block-wise segmentation on a Dask cluster: each block is one task that writes its own Zarr chunk.

``connect`` starts a ``LocalCluster`` (``workers``) or joins a running scheduler (``scheduler``,
failing within ``timeout`` seconds with a message naming it). ``run_segment_distributed`` sends
the networks to every worker once, submits one task per unfinished block and shows a progress
bar as blocks finish. Each task reads its slices (plus the SCM's halo) from the input path,
segments them with ``segment_block`` and writes the block's chunk and its done-marker, so the
result equals the single-process block-wise result and an interrupted run resumes the same way.
The input and output paths must be readable and writable by every worker (a shared filesystem).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emseg_monai.errors import InputError

logger = logging.getLogger(__name__)


def connect(workers: int | None = None, scheduler: str | None = None, timeout: float = 30.0) -> Any:
    """A ``distributed.Client``: a new local cluster of ``workers`` processes, or ``scheduler``'s."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("Dask is not installed: pip install 'dask[distributed]'") from None
    if scheduler:
        try:
            return Client(scheduler, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as exc:
            raise InputError(
                f"no Dask scheduler answered at {scheduler} within {timeout:.0f} s ({exc.__class__.__name__})"
            ) from None
    if workers is None or workers < 1:
        raise InputError(f"number of Dask workers must be at least 1, got {workers}")
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster)


def _stage1_remote(image_file: str, probs: str, marker: str, z0: int, z1: int, value_range, network, options) -> int:
    """Task: stage-1 probabilities of slices [z0, z1) into the scratch Zarr ``probs``."""
    import zarr

    from emseg_monai.inference.blockwise import _mark, block_probs
    from emseg_monai.io.volumes import open_volume

    torch.set_num_threads(1)  # one thread per single-threaded worker: no oversubscription
    prob = block_probs(open_volume(image_file), z0, z1, value_range, network, options)
    zarr.open_array(probs, mode="r+")[z0:z1] = prob
    _mark(Path(marker))
    return z1 - z0


def _final_remote(
    image_file: str, probs: str | None, output: str, marker: str, z0: int, z1: int, value_range, networks, options
) -> int:
    """Task: the mask of slices [z0, z1) (SCM on ``probs`` with its halo, or stage 1) into ``output``."""
    import zarr

    from emseg_monai.inference.blockwise import _mark, block_mask
    from emseg_monai.io.volumes import open_volume

    torch.set_num_threads(1)
    volume = open_volume(image_file)
    scratch = None if probs is None else zarr.open_array(probs, mode="r")
    mask = block_mask(volume, scratch, z0, z1, value_range, networks[0], networks[1], options)
    zarr.open_array(output, mode="r+")[z0:z1] = mask
    _mark(Path(marker))
    return z1 - z0


def _wait(futures: list, bar: Any) -> None:
    from distributed import as_completed

    try:
        for future in as_completed(futures):
            future.result()
            bar.update(1)
    finally:
        for future in futures:
            future.cancel()


def submit_blocks(
    client: Any,
    image_file: str | Path,
    output: Path,
    done_dir: Path,
    stage1_todo: list[tuple[int, int]],
    todo: list[tuple[int, int]],
    value_range: tuple[float, float],
    stage1_network: torch.nn.Module,
    scm_network: torch.nn.Module | None,
    options: dict,
    progress: bool = True,
) -> None:
    """Run both passes' blocks as tasks on ``client``'s workers; returns when all are written (or raises).

    Pass 1 (stage-1 probabilities of ``stage1_todo`` into ``done_dir/stage1.zarr``) finishes before
    pass 2 (the masks of ``todo`` into ``output``) starts, because the SCM reads its neighbours'
    probabilities.
    """
    from tqdm import tqdm

    from emseg_monai.inference.blockwise import _marker

    networks = [stage1_network.cpu().eval(), None if scm_network is None else scm_network.cpu().eval()]
    shared = client.scatter(networks, broadcast=True)
    options = {**options, "device": "cpu"}
    probs = None if scm_network is None else str(done_dir / "stage1.zarr")
    tag = np.random.randint(1 << 30)
    bar = tqdm(total=len(stage1_todo) + len(todo), desc="blocks", unit="block", disable=None if progress else True)
    first = [
        client.submit(
            _stage1_remote,
            str(image_file),
            probs,
            str(_marker(done_dir, "stage1", z0, z1)),
            z0,
            z1,
            value_range,
            shared[0],
            options,
            key=f"emseg-stage1-{z0}-{tag}",
            pure=False,
        )
        for z0, z1 in stage1_todo
    ]
    _wait(first, bar)
    step = "scm" if scm_network is not None else "stage1"
    second = [
        client.submit(
            _final_remote,
            str(image_file),
            probs,
            str(output),
            str(_marker(done_dir, step, z0, z1)),
            z0,
            z1,
            value_range,
            shared,
            options,
            key=f"emseg-final-{z0}-{tag}",
            pure=False,
        )
        for z0, z1 in todo
    ]
    _wait(second, bar)
    bar.close()
