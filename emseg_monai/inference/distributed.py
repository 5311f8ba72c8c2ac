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


def _segment_remote(
    image_file: str, output: str, marker: str, z0: int, z1: int, value_range, networks, options: dict
) -> int:
    """Task: segment slices [z0, z1) of ``image_file`` and write them into the Zarr ``output``."""
    import zarr

    from emseg_monai.inference.blockwise import segment_block
    from emseg_monai.io.stacks import atomic_write
    from emseg_monai.io.volumes import open_volume

    torch.set_num_threads(1)  # one thread per single-threaded worker: no oversubscription
    mask = segment_block(open_volume(image_file), z0, z1, value_range, networks[0], networks[1], **options)
    zarr.open_array(output, mode="r+")[z0:z1] = mask
    atomic_write(Path(marker), lambda tmp: tmp.write_text("{}"), overwrite=True)
    return z1 - z0


def submit_blocks(
    client: Any,
    image_file: str | Path,
    output: Path,
    done_dir: Path,
    todo: list[tuple[int, int]],
    value_range: tuple[float, float],
    stage1_network: torch.nn.Module,
    scm_network: torch.nn.Module | None,
    options: dict,
    progress: bool = True,
) -> None:
    """Run the ``todo`` blocks on ``client``'s workers; returns when all are written (or raises)."""
    from distributed import as_completed
    from tqdm import tqdm

    networks = [stage1_network.cpu().eval(), None if scm_network is None else scm_network.cpu().eval()]
    shared = client.scatter(networks, broadcast=True)
    options = {**options, "device": "cpu"}
    futures = [
        client.submit(
            _segment_remote,
            str(image_file),
            str(output),
            str(done_dir / f"{z0}-{z1}.json"),
            z0,
            z1,
            value_range,
            shared,
            options,
            key=f"emseg-block-{z0}-{z1}-{np.random.randint(1 << 30)}",
            pure=False,
        )
        for z0, z1 in todo
    ]
    try:
        for future in tqdm(
            as_completed(futures), total=len(futures), desc="blocks", unit="block", disable=None if progress else True
        ):
            future.result()
    finally:
        for future in futures:
            future.cancel()
