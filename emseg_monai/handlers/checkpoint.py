"""Resumable training: the state after every epoch, the weights only at the end, a clean stop on signals.

``TrainingCheckpoint`` saves, after each epoch, the network, optimiser, learning-rate schedule and
trainer counters to ``state_file`` (atomically: a temporary file, then a rename), and the network
weights to ``weights_file`` only when training completes. On SIGINT or SIGTERM it lets the current
iteration finish, stops the trainer without writing the weights, and ``raise_if_interrupted`` then
raises ``TrainingInterrupted``; running the config again with ``resume: true`` continues from the
last saved epoch and ends at the same epoch and iteration count as an uninterrupted run.

The state also holds the random generators (torch, CUDA, NumPy, Python, and every random
transform of the training data loader), so on the same machine and settings a resumed run draws
the same crops and augmentations as an uninterrupted one and ends with the same weights.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data.utils import worker_init_fn as monai_worker_init

from emseg_monai.errors import InputError, TrainingInterrupted
from emseg_monai.io.stacks import atomic_write
from emseg_monai.options import as_bool

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def is_main_process() -> bool:
    """True unless this is a torch.distributed process of rank > 0 (only rank 0 writes files)."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


def worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of the training data loaders: MONAI's per-worker seeding, then a process group of its own.

    A SIGTERM or SIGINT sent to the whole process group (``timeout``, ``kill -- -PGID``, Ctrl-C in a
    terminal) would otherwise kill the loader's worker processes mid-epoch, and the trainer, which
    finishes the current iteration before stopping (``TrainingCheckpoint``), would fail on a dead
    worker. In their own group the workers are reached only by signals sent to them by name (the
    data loader's own shutdown still is), and they end by themselves when the trainer's process does.
    """
    monai_worker_init(worker_id)
    if hasattr(os, "setpgid"):  # POSIX; on Windows Ctrl-C events reach every console process anyway
        try:
            os.setpgid(0, 0)
        except OSError:  # already a group or session leader: nothing to leave
            pass


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or ``network`` itself)."""
    return (
        network.module
        if isinstance(network, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel))
        else network
    )


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"cannot read the training state {path}: {exc.__class__.__name__}") from exc
    if not isinstance(state, dict) or "trainer" not in state or "model" not in state:
        raise InputError(f"{path} is not an emseg training state (no 'trainer' and 'model' entries)")
    return state


def training_done(weights_file: str | Path, state_file: str | Path) -> bool:
    """Whether a training run that writes these files has completed.

    True when the weights exist and either no state was kept or the state reached its last epoch.
    """
    weights_file, state_file = Path(weights_file), Path(state_file)
    if not weights_file.is_file():
        return False
    if not state_file.is_file():
        return True
    trainer = _load_state(state_file)["trainer"]
    return int(trainer["iteration"]) >= int(trainer["max_epochs"]) * int(trainer["epoch_length"])


def random_states(root: Any) -> list[np.random.RandomState]:
    """Every ``np.random.RandomState`` reachable from ``root`` through object attributes and lists.

    Walks the way MONAI's ``set_rnd`` seeds a dataset's transforms (attribute order, so the list
    is the same for the same config), but also into transforms that hold other transforms.
    """
    found: list[np.random.RandomState] = []
    seen: set[int] = set()

    def walk(obj: Any) -> None:
        if id(obj) in seen or isinstance(obj, (np.ndarray, torch.Tensor, str, bytes, int, float)):
            return
        seen.add(id(obj))
        if isinstance(obj, np.random.RandomState):
            found.append(obj)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)
        elif hasattr(obj, "__dict__"):
            for key, value in vars(obj).items():
                if not key.startswith("__"):
                    walk(value)

    walk(root)
    return found


def _numpy_state(generator: np.random.RandomState) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = generator.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "gauss": [int(has_gauss), float(cached)]}


def _set_numpy_state(generator: np.random.RandomState, state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    generator.set_state(("MT19937", keys, state["pos"], state["gauss"][0], state["gauss"][1]))


def save_random_state(data: Any = None) -> dict[str, Any]:
    """The generators' states: torch (and CUDA), NumPy's global one, Python's, and ``data``'s transforms'."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(np.random.mtrand._rand),
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "transforms": [_numpy_state(r) for r in random_states(data)] if data is not None else [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_random_state(state: dict[str, Any], data: Any = None) -> None:
    """Restore what ``save_random_state`` returned; ``data`` must be built by the same config."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    _set_numpy_state(np.random.mtrand._rand, state["numpy"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    generators = random_states(data) if data is not None else []
    if len(generators) != len(state["transforms"]):
        logger.warning(
            "the saved state has %d transform generators, the data loader %d: augmentations will differ from an "
            "uninterrupted run",
            len(state["transforms"]),
            len(generators),
        )
        return
    for generator, saved in zip(generators, state["transforms"]):
        _set_numpy_state(generator, saved)


def _dataset(engine: Engine) -> Any:
    """The training data set of ``engine`` (MONAI's ``data_loader``, or ignite's ``state.dataloader``), or None."""
    loader = getattr(engine, "data_loader", None) or getattr(engine.state, "dataloader", None)
    return getattr(loader, "dataset", None)


class TrainingCheckpoint:
    """Attach to a ``SupervisedTrainer``: epoch states, final weights, resume, graceful stop.

    Parameters
    ----------
    weights_file : str or Path
        Final weights (the network's ``state_dict``, unwrapped from DistributedDataParallel), written
        once training completes. In a torch.distributed run only rank 0 writes files; every rank
        loads the state on resume.
    state_file : str or Path
        Resumable state, rewritten after every ``every`` epochs: ``model``, ``optimizer``,
        ``lr_scheduler`` (when given), ``trainer`` (ignite ``Engine.state_dict()``) and ``random``
        (``save_random_state``).
    network, optimizer, lr_scheduler
        The objects whose states are saved and restored.
    resume : bool
        Load ``state_file`` when the trainer starts; it must exist.
    save_weights : bool
        False when another handler keeps the weights (best-validated checkpoint).
    every : int
        Save the state every this many epochs (and always after the last one).
    """

    def __init__(
        self,
        weights_file: str | Path,
        state_file: str | Path,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any = None,
        resume: bool = False,
        save_weights: bool = True,
        every: int = 1,
    ) -> None:
        if int(every) < 1:
            raise InputError(f"checkpoint interval must be at least 1 epoch, got {every}")
        self.weights_file, self.state_file = Path(weights_file), Path(state_file)
        self.network, self.optimizer, self.lr_scheduler = network, optimizer, lr_scheduler
        self.resume, self.save_weights = as_bool(resume, "resume"), as_bool(save_weights, "save_weights")
        self.every = int(every)
        for folder in {self.weights_file.parent, self.state_file.parent} if is_main_process() else ():
            folder.mkdir(parents=True, exist_ok=True)
        self.stop_signal: int | None = None
        self._previous: dict[int, Any] = {}
        if self.resume and not self.state_file.is_file():
            raise InputError(f"nothing to resume: no training state at {self.state_file}")

    # ------------------------------------------------------------------ wiring
    def attach(self, engine: Engine) -> None:
        engine._emseg_checkpoint = self  # found again by raise_if_interrupted(engine)
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.check_signal)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)
        engine.add_event_handler(Events.TERMINATE, self.restore_signals)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self.exception_raised)

    def started(self, engine: Engine) -> None:
        self.stop_signal = None
        if self.resume:
            state = _load_state(self.state_file)
            if int(state["trainer"]["max_epochs"]) != engine.state.max_epochs:
                raise InputError(
                    f"the state in {self.state_file} is for {state['trainer']['max_epochs']} epochs, "
                    f"this run has {engine.state.max_epochs}"
                )
            unwrap(self.network).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.lr_scheduler is not None and "lr_scheduler" in state:
                self.lr_scheduler.load_state_dict(state["lr_scheduler"])
            engine.load_state_dict(state["trainer"])
            if "random" in state:
                load_random_state(state["random"], _dataset(engine))
            logger.info("resumed from %s at epoch %d", self.state_file, engine.state.epoch)
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum
        logger.warning("%s received: stopping after this iteration", signal.Signals(signum).name)

    def check_signal(self, engine: Engine) -> None:
        if self.stop_signal is not None:
            engine.terminate(skip_completed=True)

    def epoch_completed(self, engine: Engine) -> None:
        last = engine.state.epoch >= engine.state.max_epochs
        if engine.state.epoch % self.every == 0 or last:
            self.save_state(engine)

    def completed(self, engine: Engine) -> None:
        self.restore_signals()
        if self.save_weights and is_main_process():
            weights = unwrap(self.network).state_dict()
            atomic_write(self.weights_file, lambda tmp: torch.save(weights, tmp))
            logger.info("weights saved to %s", self.weights_file)

    def exception_raised(self, engine: Engine, exc: BaseException) -> None:
        self.restore_signals()
        if self.stop_signal is not None and _worker_died(exc):
            # the stop signal also reached the data-loader workers (a batch system signalling every
            # process): the state of the last finished epoch is intact, so this is a clean stop
            self.raise_if_interrupted(engine)
        raise exc

    def restore_signals(self, engine: Engine | None = None) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    # ------------------------------------------------------------------ state
    def save_state(self, engine: Engine) -> None:
        if not is_main_process():
            return
        state = {
            "model": unwrap(self.network).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "trainer": engine.state_dict(),
            "random": save_random_state(_dataset(engine)),
        }
        if self.lr_scheduler is not None:
            state["lr_scheduler"] = self.lr_scheduler.state_dict()
        atomic_write(self.state_file, lambda tmp: torch.save(state, tmp))

    def raise_if_interrupted(self, engine: Engine) -> None:
        """Raise ``TrainingInterrupted`` when a signal stopped ``engine``; call after ``engine.run()``."""
        if self.stop_signal is None:
            return
        saved = _load_state(self.state_file)["trainer"]["iteration"] if self.state_file.is_file() else 0
        epoch = saved // max(engine.state.epoch_length or 1, 1)
        name = signal.Signals(self.stop_signal).name
        where = f"the state of epoch {epoch} is in {self.state_file}" if saved else "no epoch had completed"
        raise TrainingInterrupted(
            f"training stopped by {name} at iteration {engine.state.iteration}; {where}; to continue, run the same "
            "command again with --resume (emseg train) or --resume true (python -m monai.bundle run)",
            self.stop_signal,
        )


def _worker_died(exc: BaseException) -> bool:
    """True for torch's error when a data-loader worker process ended (killed or exited)."""
    return isinstance(exc, RuntimeError) and str(exc).startswith("DataLoader worker")


def raise_if_interrupted(engine: Engine) -> None:
    """After ``engine.run()``: raise ``TrainingInterrupted`` if a signal stopped it (see ``TrainingCheckpoint``)."""
    checkpoint = getattr(engine, "_emseg_checkpoint", None)
    if checkpoint is not None:
        checkpoint.raise_if_interrupted(engine)
