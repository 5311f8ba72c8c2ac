"""Does MPP help on this stack? A check on labeled slices that MPP did not use.

Stage 1 was trained on every labeled slice; MPP turns its masks into the SCM's targets using the
labeled slices again. To see whether MPP improves on stage 1 on a user's stack (it does on EPFL's
isotropic FIB-SEM; with thick sections its Z steps can make things worse), the inner labeled
slices are split into two folds. For each fold, MPP runs with that fold hidden, and its output on
the hidden slices is scored against their ground truth, next to stage 1's masks there. Each
candidate MPP setting gets one Dice over both folds (voxels pooled).

Stage 1 has seen the hidden slices in training, so its score there is optimistic, and MPP works
there with labeled slices twice as far apart as in the run: the check leans towards stage 1, the
safe side. The decision: the best candidate gives the targets; the SCM is used (``use_scm``) only
when that candidate beats stage 1 by at least ``margin``. The default 0.15 Dice was set from EPFL's
label curves (docs/results.md): the check's gain runs below the SCM's own gain on the unlabeled
slices. Where the check gained +0.19 to +0.43 (8 and 16 labeled slices) the SCM added +0.67 to
+1.22; where it gained -0.07 to +0.09 (4 and 8 labeled slices, 40 nm sections) the SCM added
-0.19 to +0.10. 0.15 lies between the two groups (0.2, the default up to emseg-monai 0.8.0, missed
the +0.92 of the 16-slice run with the shipped schedule, whose check gave +0.19).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from emseg_monai.evaluation.metrics import dice_iou
from emseg_monai.transforms.mpp import mpp

logger = logging.getLogger(__name__)

STAGE1 = "stage 1"
MIN_LABELED = 3  # two outer labeled slices bracket at least one that can be hidden
MARGIN = 0.0015  # Dice (0..1), i.e. 0.15: the default of check_mpp, run_mpp and mpp.yaml (see module doc)


def candidate_settings(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The MPP settings the check compares: as configured, and cleaning only (no spread, no votes)."""
    configured = dict(settings)
    clean_only = {**configured, "spread": False, "vote_distances": (), "bracket_vote": False}
    return {"mpp": configured, "mpp cleaning only": clean_only}


def check_mpp(
    mask: np.ndarray,
    labels: np.ndarray,
    labeled: np.ndarray,
    candidates: Mapping[str, Mapping[str, Any]],
    margin: float = MARGIN,
) -> dict[str, Any]:
    """Score stage 1 and each MPP candidate on inner labeled slices hidden from MPP (two folds).

    Parameters
    ----------
    mask : numpy.ndarray
        (Z, Y, X) bool stage-1 masks of the training stack.
    labels : numpy.ndarray
        (Z, Y, X) ground truth, read on the ``labeled`` slices only.
    labeled : numpy.ndarray
        Sorted labeled slice indices.
    candidates : mapping
        Name -> ``mpp`` keyword arguments (``candidate_settings``).
    margin : float
        Dice (0..1) a candidate must gain over stage 1 for the SCM to be used.

    Returns
    -------
    dict
        ``checked`` (bool), ``held_out`` (slice indices), ``dice`` (name -> pooled Dice, stage 1
        included), ``choice`` (the candidate whose targets train the SCM), ``use_scm`` and
        ``reason`` (one line).
    """
    labeled = np.unique(np.asarray(labeled, dtype=np.int64))
    names = list(candidates)
    if labeled.size < MIN_LABELED:
        return {
            "checked": False,
            "held_out": [],
            "dice": {},
            "choice": names[0],
            "use_scm": True,
            "reason": f"not checked: {labeled.size} labeled slices (the check hides inner ones: needs {MIN_LABELED})",
        }
    inner = labeled[1:-1]
    folds = [inner[k::2] for k in range(2) if inner[k::2].size]
    held = np.sort(np.concatenate(folds))
    outputs = {name: np.zeros((held.size, *mask.shape[1:]), dtype=bool) for name in names}
    where = {int(z): i for i, z in enumerate(held)}
    for fold in folds:
        used = np.setdiff1d(labeled, fold)
        for name in names:
            out = mpp(mask, labels, used, **candidates[name])
            for z in fold:
                outputs[name][where[int(z)]] = out[z]
    truth = np.asarray(labels[held], dtype=bool)
    dice = {STAGE1: float(dice_iou(np.asarray(mask[held], dtype=bool), truth)[0])}
    dice.update({name: float(dice_iou(outputs[name], truth)[0]) for name in names})
    choice = max(names, key=lambda n: dice[n])
    gain = dice[choice] - dice[STAGE1]
    use_scm = bool(gain >= margin)
    scores = ", ".join(f"{name} {100 * d:.2f}" for name, d in dice.items())
    if use_scm:
        reason = f"'{choice}' beats stage 1 by {100 * gain:.2f} Dice on {held.size} hidden labeled slices ({scores})"
    else:
        reason = (
            f"MPP does not beat stage 1 by {100 * margin:.2f} Dice on {held.size} hidden labeled slices ({scores}): "
            "the run segments with stage 1 alone"
        )
    return {
        "checked": True,
        "held_out": [int(z) for z in held],
        "dice": {k: round(v, 4) for k, v in dice.items()},
        "choice": choice,
        "use_scm": use_scm,
        "reason": reason,
    }
