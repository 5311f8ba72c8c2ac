"""Per-epoch training history (loss, validation Dice, learning rate) as a CSV, for curves and reports."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

from ignite.engine import Engine, Events

from emseg_monai.handlers.checkpoint import is_main_process
from emseg_monai.io.stacks import atomic_write

logger = logging.getLogger(__name__)
COLUMNS = ("epoch", "iteration", "loss", "val_dice", "lr", "seconds")


class TrainingHistory:
    """Append one row per epoch to ``csv_file`` (rewritten atomically each epoch).

    Columns: epoch, iteration, mean training loss of the epoch, the validation Dice of the last
    validation (empty when there is none), learning rate at the end of the epoch, and seconds since
    the run started. A resumed run keeps the rows of the epochs before the resume point.

    Parameters
    ----------
    csv_file : str or Path
        Output CSV.
    optimizer : torch.optim.Optimizer or None
        Read for the learning rate.
    evaluator : ignite Engine or None
        The validation engine; its ``val_mean_dice`` metric fills ``val_dice``.
    name : str
        Names the training in the log line written after every epoch (loss, validation Dice, time
        per epoch, time left).
    """

    def __init__(
        self, csv_file: str | Path, optimizer=None, evaluator: Engine | None = None, name: str = "training"
    ) -> None:
        self.name = name
        self.csv_file = Path(csv_file)
        self.csv_file.parent.mkdir(parents=True, exist_ok=True)
        self.optimizer, self.evaluator = optimizer, evaluator
        self.rows: list[dict] = []
        self._losses: list[float] = []
        self._offset, self._start, self._first_epoch = 0.0, time.perf_counter(), 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def started(self, engine: Engine) -> None:
        self.rows = read_history(self.csv_file) if self.csv_file.is_file() else []
        self.rows = [row for row in self.rows if int(row["epoch"]) <= engine.state.epoch]
        self._offset = float(self.rows[-1]["seconds"]) if self.rows else 0.0
        self._start, self._first_epoch = time.perf_counter(), engine.state.epoch

    def iteration_completed(self, engine: Engine) -> None:
        loss = engine.state.output
        if isinstance(loss, list):
            loss = loss[0]
        if isinstance(loss, dict):
            loss = loss.get("loss")
        if loss is not None:
            self._losses.append(float(loss))

    def epoch_completed(self, engine: Engine) -> None:
        val = ""
        if self.evaluator is not None and self.evaluator.state.epoch == engine.state.epoch:
            val = f"{float(self.evaluator.state.metrics.get('val_mean_dice', float('nan'))):.6f}"
        lr = f"{self.optimizer.param_groups[0]['lr']:.6g}" if self.optimizer is not None else ""
        loss = f"{sum(self._losses) / len(self._losses):.6f}" if self._losses else ""
        self._losses = []
        self.rows.append(
            {
                "epoch": engine.state.epoch,
                "iteration": engine.state.iteration,
                "loss": loss,
                "val_dice": val,
                "lr": lr,
                "seconds": f"{self._offset + time.perf_counter() - self._start:.1f}",
            }
        )
        if is_main_process():
            atomic_write(self.csv_file, self._write)
            self._log(engine, loss, val)

    def _log(self, engine: Engine, loss: str, val: str) -> None:
        done = engine.state.epoch - self._first_epoch
        per_epoch = (time.perf_counter() - self._start) / max(done, 1)
        left = (engine.state.max_epochs - engine.state.epoch) * per_epoch
        parts = [f"{self.name} epoch {engine.state.epoch}/{engine.state.max_epochs}"]
        parts.append(f"loss {float(loss):.4f}" if loss else "loss -")
        if val:
            parts.append(f"validation Dice {100 * float(val):.2f}%")
        parts.append(f"{per_epoch:.1f} s/epoch, about {_duration(left)} left")
        logger.info(", ".join(parts))

    def _write(self, tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)


def _duration(seconds: float) -> str:
    """``seconds`` as "42 s", "7 min" or "1 h 05 min"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def read_history(csv_file: str | Path) -> list[dict]:
    """Rows of a history CSV written by ``TrainingHistory`` (values as strings)."""
    with open(csv_file, newline="") as f:
        return list(csv.DictReader(f))
