"""Fine-tuning a finished run after its labeled slices changed (``emseg train --resume``).

The run folder is updated in place: its weights move to ``models/previous/`` and seed both new
trainings (``train.yaml``'s ``init_weights``), what was made from them is removed, and
``models/finetune.json`` marks a fine-tuning in progress until ``train_pipeline`` completes it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from emseg_monai.data.slices import parse_slice_spec
from emseg_monai.errors import InputError
from emseg_monai.io.stacks import atomic_write
from emseg_monai.training.bundle import config_defaults, first_section_keys

logger = logging.getLogger(__name__)

FINETUNE_MARKER = "finetune.json"  # in models/: a fine-tuning started and not finished
DERIVED = ("stage1_prob.tif", "stage1_mask.tif", "mpp_mask.tif", "final_mask.tif")  # remade from the weights
FINETUNE_SHARE = 3  # fine-tuning trains 1/FINETUNE_SHARE of the run's epochs unless told otherwise


def prepare_finetune(output_dir: str | Path, labeled_slices: str, n_slices: int) -> Path | None:
    """Make a finished run ready to be fine-tuned with changed labeled slices (``emseg train --resume``).

    When the run in ``output_dir`` finished (``final_mask.tif``) with labeled slices other than
    ``labeled_slices``: its weights move to ``models/previous/``, what was made from them (stage-1
    outputs, MPP targets, final mask, training states) is removed, and ``models/finetune.json``
    records the change, so that an interrupted fine-tuning resumes too. Returns ``models/previous``
    (the weights to start from), or None when ``--resume`` means continuing an interrupted run.
    The decision and the slices added or dropped are logged.
    """
    out = Path(output_dir)
    models = out / "models"
    previous, marker = models / "previous", models / FINETUNE_MARKER
    new = {int(z) for z in parse_slice_spec(labeled_slices, n_slices)}
    if marker.is_file():
        started = json.loads(marker.read_text())["labeled_slices"]
        if {int(z) for z in parse_slice_spec(started, n_slices)} != new:
            raise InputError(
                f"{out} holds an interrupted fine-tuning with --labeled {started!r}: resume it with that, "
                f"got {labeled_slices!r}"
            )
        logger.info("resume: continuing the interrupted fine-tuning of %s", out)
        return previous
    recorded = out / "configs" / "train.yaml"
    if not ((out / "final_mask.tif").is_file() and recorded.is_file()):
        return None  # an interrupted first training: continue it
    old = {int(z) for z in parse_slice_spec(config_defaults(recorded)["labeled_slices"], n_slices)}
    if old == new:
        return None
    if "init_weights" not in first_section_keys(recorded):
        raise InputError(f"{out} was trained by an emseg older than 0.3 and cannot be fine-tuned: train a new run")
    added, dropped = sorted(new - old), sorted(old - new)
    logger.info(
        "fine-tuning %s: labeled slices changed (%d added: %s; %d dropped: %s); both networks start from "
        "its weights instead of random ones",
        out,
        len(added),
        ", ".join(map(str, added)) or "none",
        len(dropped),
        ", ".join(map(str, dropped)) or "none",
    )
    previous.mkdir(exist_ok=True)
    for name in ("model.pt", "scm.pt"):
        os.replace(models / name, previous / name)
    for path in [out / name for name in DERIVED] + list(models.glob("*_state.pt")):
        path.unlink(missing_ok=True)
    record = {"labeled_slices": labeled_slices, "previous_labeled_slices": sorted(old)}
    atomic_write(marker, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    return previous


def finetune_epochs(run: str | Path) -> tuple[int, int]:
    """Epochs of stage 1 and the SCM for fine-tuning ``run``: 1/FINETUNE_SHARE of its own, at least 1."""
    train = config_defaults(Path(run) / "configs" / "train.yaml")
    scm = {**train, **config_defaults(Path(run) / "configs" / "scm_train.yaml")}
    return tuple(max(1, round(int(c["epochs"]) / FINETUNE_SHARE)) for c in (train, scm))
