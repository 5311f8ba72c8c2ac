"""Does MPP help on this stack? A check on labeled slices that MPP did not use.

Stage 1 was trained on every labeled slice; MPP turns its masks into the SCM's targets using the
labeled slices again. To see whether MPP improves on stage 1 on a user's stack (it does on EPFL's
isotropic FIB-SEM; with thick sections its Z steps can make things worse), the inner labeled
slices are split into two folds. For each fold, MPP runs with that fold hidden, and its output on
the hidden slices is scored against their ground truth, next to stage 1's masks there. Each
candidate MPP setting gets one Dice over both folds (voxels pooled).

Stage 1 has seen the hidden slices in training, so its score there is optimistic, and MPP works
there with labeled slices twice as far apart as in the run: the check leans towards stage 1, the
safe side. The decision: the best candidate gives the targets; the SCM is used (``use_scm``) when
that candidate's Dice minus stage 1's is at least ``margin``. The default, -0.1 Dice since
emseg-monai 0.8.8, reads "MPP is not worse than stage 1 beyond the check's noise": with the
smoothing of the SCM's output (0.8.6, 0.8.7), all eight runs whose check came out between -0.07
and +0.09 (EPFL with 4 and 8 labeled slices, the 20 nm and 40 nm section proxies, two seeds each)
gained +0.30 to +1.07 Dice from the SCM on their unlabeled slices, and the margin of 0.15 used
until then kept stage 1 on all of them (docs/results.md, "Your own stack"). A check well below zero
(MPP losing on the user's own labels, as on thick sections before MPP's Z steps followed the
voxel size) still keeps stage 1.
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
# a Dice difference (-1..1), i.e. -0.1 Dice: the default of check_mpp, run_mpp and mpp.yaml (see module doc)
MARGIN = -0.001


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
        Dice difference (-1..1) the best candidate minus stage 1 must reach for the SCM to be used.

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
    digits = (
        2 if f"{100 * gain:+.2f}" != f"{100 * margin:+.2f}" else 3
    )  # "-0.104, below -0.10", not "-0.10, below -0.10"
    against = f"{100 * gain:+.{digits}f} Dice against stage 1 on {held.size} hidden labeled slices ({scores})"
    if use_scm:
        reason = f"'{choice}' {against}, not below the margin of {100 * margin:+.2f}: the SCM is used"
    else:
        reason = f"MPP {against}, below the margin of {100 * margin:+.2f}: the run segments with stage 1 alone"
    return {
        "checked": True,
        "held_out": [int(z) for z in held],
        "dice": {k: round(v, 4) for k, v in dice.items()},
        "choice": choice,
        "use_scm": use_scm,
        "reason": reason,
    }
