"""The Dask driver: each block is one task that reads its slices and writes its own Zarr chunk.

``connect`` starts a ``LocalCluster`` (``workers``) or joins a running scheduler (``scheduler``,
failing within ``timeout`` seconds with a message naming it). ``run_dask`` submits pass 1 (stage-1
probabilities of every unfinished block), waits for it, then pass 2 (the masks). Each task carries
the networks itself (a few MB) instead of a scattered copy: a worker lost at any moment, even
before its first task, costs only a rerun of its blocks, which Dask does on the others (up to
``retries`` more times per task). The input and output paths must be readable and writable by
every worker (a shared filesystem). Faults of the cluster end the run with ``EnvironmentFault``,
one line naming the fault; finished blocks keep their markers, so ``resume`` goes on from there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

import torch

from emseg_monai.errors import EnvironmentFault, InputError
from emseg_monai.inference.block import BlockPlan, block_mask, block_probs, mark, marker
from emseg_monai.inference.settings import InferenceSettings

logger = logging.getLogger(__name__)


def connect(workers: int | None = None, scheduler: str | None = None, timeout: float = 30.0) -> Any:
    """A ``distributed.Client``: a new local cluster of ``workers`` processes, or ``scheduler``'s."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("Dask is not installed: pip install 'dask[distributed]'") from None
    if not logger.isEnabledFor(logging.DEBUG):  # distributed sets its loggers to INFO on import: a wall of lines
        for name in ("distributed", "distributed.client", "distributed.scheduler", "distributed.nanny", "tornado"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler:
        try:
            return Client(scheduler, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as exc:
            raise InputError(
                f"no Dask scheduler answered at {scheduler} within {timeout:.0f} s ({exc.__class__.__name__})"
            ) from None
    if workers is None or workers < 1:
        raise InputError(f"number of Dask workers must be at least 1, got {workers}")
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    return Client(cluster)


def disconnect(client: Any, own_cluster: bool) -> None:
    """Close ``client`` and, when this process started it, its local cluster."""
    cluster = client.cluster if own_cluster else None
    try:
        client.close()
    finally:
        if cluster is not None:
            cluster.close()


_THREADS_LOCK = threading.Lock()
_THREADS_USERS = [0, 0]  # tasks running in this process, torch's thread count before the first


@contextlib.contextmanager
def _one_torch_thread():
    """torch on one thread while a task runs (no oversubscription of single-threaded workers).

    The count is process-wide: in a worker that runs in the caller's process (a threads-only
    cluster) the caller's setting comes back once the last running task ends.
    """
    with _THREADS_LOCK:
        if _THREADS_USERS[0] == 0:
            _THREADS_USERS[1] = torch.get_num_threads()
        _THREADS_USERS[0] += 1
        torch.set_num_threads(1)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_USERS[0] -= 1
            if _THREADS_USERS[0] == 0:
                torch.set_num_threads(_THREADS_USERS[1])


def _stage1_task(image_file: str, probs: str, done: str, z0: int, z1: int, value_range, network, settings) -> int:
    """Task: stage-1 probabilities of slices [z0, z1) into the scratch Zarr ``probs``."""
    import zarr

    from emseg_monai.io.volumes import open_volume

    with _one_torch_thread():
        zarr.open_array(probs, mode="r+")[z0:z1] = block_probs(
            open_volume(image_file), z0, z1, value_range, network, settings
        )
    mark(Path(done))
    return z1 - z0


def _mask_task(
    image_file: str, probs: str | None, output: str, done: str, z0: int, z1: int, value_range, networks, settings
) -> int:
    """Task: the mask of slices [z0, z1) (SCM on ``probs`` with its halo, or stage 1) into ``output``."""
    import zarr

    from emseg_monai.io.volumes import open_volume

    scratch = None if probs is None else zarr.open_array(probs, mode="r")
    with _one_torch_thread():
        mask = block_mask(open_volume(image_file), scratch, z0, z1, value_range, networks, settings)
    zarr.open_array(output, mode="r+")[z0:z1] = mask
    mark(Path(done))
    return z1 - z0


def _wait(client: Any, futures: list, bar: Any, where: str, no_workers: float = 120.0) -> None:
    """Wait for ``futures`` (raising the first task error), updating ``bar``.

    Raises ``EnvironmentFault`` when the cluster fails, or when it has had no worker for
    ``no_workers`` seconds (Dask itself would wait for one forever).
    """
    from distributed import wait

    pending, alone_since = set(futures), None
    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=5, return_when="FIRST_COMPLETED")
            except TimeoutError:
                if client.scheduler_info().get("workers"):
                    alone_since = None
                elif alone_since is None:
                    alone_since = time.monotonic()
                elif time.monotonic() - alone_since > no_workers:
                    raise EnvironmentFault(
                        f"the Dask cluster has had no worker for {no_workers:.0f} s while running {where}"
                    ) from None
                continue
            for future in done:
                future.result()
                bar.update(1)
    except EnvironmentFault:
        raise
    except Exception as exc:
        fault = cluster_fault(exc, where)
        if fault is None:
            raise
        raise fault from exc
    finally:
        for future in futures:
            if not future.done():
                future.cancel()


def cluster_fault(exc: BaseException, where: str) -> EnvironmentFault | None:
    """An ``EnvironmentFault`` naming what went wrong with the cluster, or None for other errors."""
    from distributed import KilledWorker
    from distributed.comm import CommClosedError

    if isinstance(exc, KilledWorker):
        return EnvironmentFault(f"Dask workers kept dying while running {where} ({exc.args[0] if exc.args else exc})")
    if isinstance(exc, (CommClosedError, ConnectionError, TimeoutError)) or type(exc).__name__ == "CancelledError":
        return EnvironmentFault(f"lost the Dask scheduler while running {where} ({type(exc).__name__})")
    return None


def run_dask(
    client: Any,
    image_file: str | Path,
    output: Path,
    plan: BlockPlan,
    networks: tuple[torch.nn.Module, torch.nn.Module | None],
    settings: InferenceSettings,
    progress: bool = True,
    retries: int = 2,
) -> None:
    """Run both passes' blocks as tasks on ``client``'s workers; returns when all are written (or raises).

    Pass 1 (stage-1 probabilities of ``plan.stage1_todo`` into ``plan.done_dir/stage1.zarr``) finishes
    before pass 2 (the masks of ``plan.todo`` into ``output``) starts, because the SCM reads its neighbours'
    probabilities.
    """
    from tqdm import tqdm

    stage1_network, scm_network = (None if n is None else n.cpu().eval() for n in networks)
    settings = settings.replace(device="cpu")
    done_dir, value_range = plan.done_dir, plan.value_range
    probs = None if scm_network is None else str(done_dir / "stage1.zarr")
    step = "scm" if scm_network is not None else "stage1"
    bar = tqdm(
        total=len(plan.stage1_todo) + len(plan.todo), desc="blocks", unit="block", disable=None if progress else True
    )
    common = {"pure": False, "retries": retries}
    try:
        first = [
            client.submit(
                _stage1_task,
                str(image_file),
                probs,
                str(marker(done_dir, "stage1", z0, z1)),
                z0,
                z1,
                value_range,
                stage1_network,
                settings,
                **common,
            )
            for z0, z1 in plan.stage1_todo
        ]
        _wait(client, first, bar, "stage 1")
        second = [
            client.submit(
                _mask_task,
                str(image_file),
                probs,
                str(output),
                str(marker(done_dir, step, z0, z1)),
                z0,
                z1,
                value_range,
                (stage1_network, scm_network),
                settings,
                **common,
            )
            for z0, z1 in plan.todo
        ]
        _wait(client, second, bar, "the SCM" if scm_network is not None else "stage 1")
    finally:
        bar.close()
