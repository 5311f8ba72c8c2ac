"""Per-epoch training history (loss, validation Dice, learning rate) as a CSV, for curves and reports."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from ignite.engine import Engine, Events

from emseg_monai.handlers.checkpoint import is_main_process
from emseg_monai.io.stacks import atomic_write

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
    """

    def __init__(self, csv_file: str | Path, optimizer=None, evaluator: Engine | None = None) -> None:
        self.csv_file = Path(csv_file)
        self.csv_file.parent.mkdir(parents=True, exist_ok=True)
        self.optimizer, self.evaluator = optimizer, evaluator
        self.rows: list[dict] = []
        self._losses: list[float] = []
        self._offset, self._start = 0.0, time.perf_counter()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def started(self, engine: Engine) -> None:
        self.rows = read_history(self.csv_file) if self.csv_file.is_file() else []
        self.rows = [row for row in self.rows if int(row["epoch"]) <= engine.state.epoch]
        self._offset = float(self.rows[-1]["seconds"]) if self.rows else 0.0
        self._start = time.perf_counter()

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

    def _write(self, tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)


def read_history(csv_file: str | Path) -> list[dict]:
    """Rows of a history CSV written by ``TrainingHistory`` (values as strings)."""
    with open(csv_file, newline="") as f:
        return list(csv.DictReader(f))
