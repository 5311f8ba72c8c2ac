"""A training progress bar that shows the running loss."""

from __future__ import annotations

from typing import Any

from ignite.contrib.handlers import ProgressBar
from ignite.engine import Engine


def iteration_loss(output: Any) -> dict[str, float]:
    """``{"loss": value}`` from a MONAI trainer's output (a list of per-sample dicts, or one dict)."""
    if isinstance(output, (list, tuple)) and not output:
        return {}
    first = output[0] if isinstance(output, (list, tuple)) else output
    loss = first.get("loss") if isinstance(first, dict) else first
    return {} if loss is None else {"loss": float(loss)}


class LossProgressBar(ProgressBar):
    """ignite's ``ProgressBar`` showing the iteration's loss beside the iteration count and ETA.

    Bundle configs attach handlers with ``handler.attach(engine)`` only, so the loss is wired here.
    Takes ``ProgressBar``'s arguments (``persist``, ``disable``: None shows a bar only on a terminal).
    """

    def attach(self, engine: Engine, metric_names: Any = None, output_transform: Any = None, **kwargs: Any) -> None:
        super().attach(engine, metric_names=metric_names, output_transform=output_transform or iteration_loss, **kwargs)
