"""Dice of bundles' final probabilities at several thresholds, scored on chosen slices.

A bundle's masks are its final probabilities (the SCM's, smoothed, or stage 1's where the SCM is
not used) at ``threshold`` (0.5 by default). This segments the stack once per bundle with its own
settings and scores the same probabilities at each threshold, so a bundle's lines differ only by
the threshold. Example, the shipped bundle on EPFL's 133 unlabeled slices::

    python benchmarks/threshold_sweep.py bundle --image ../shared/data/epfl/training.tif \\
        --truth ../shared/data/epfl/training_groundtruth.tif --score rest-of:0:156:5 \\
        --thresholds 0.3 0.4 0.5 0.6

``--score`` as in ``benchmarks/ensemble.py`` (``rest-of:SPEC``: the slices outside SPEC, or a slice
spec such as ``110:165``); ``--scm`` forces the SCM on where a run's check kept stage 1. Prints one
line per threshold: Dice, IoU, and the foreground share against the labels'. Not a test.
"""

from __future__ import annotations

import time

from ensemble import read_scored, runs_parser  # benchmarks/ensemble.py: this script's folder is on sys.path

from emseg_monai.evaluation import dice_iou
from emseg_monai.inference.stages import segment
from emseg_monai.transforms.stacks import to_mask
from emseg_monai.workflows import load_bundle_networks


def main() -> None:
    parser = runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.4, 0.45, 0.5, 0.55, 0.6])
    parser.add_argument("--scm", action="store_true", help="use the SCM even where a run's check kept stage 1")
    args = parser.parse_args()
    image, truth, scored = read_scored(args)
    truth = truth[scored] > 0
    for run in args.runs:
        stage1, scm, settings, _ = load_bundle_networks(run, **({"use_scm": True} if args.scm else {}))
        start = time.perf_counter()
        prob = segment(image, stage1, scm, settings, progress=False)["final_prob"][scored]
        used = "on" if settings.use_scm else "off"
        print(f"{run}: {scored.size} slices scored, SCM {used}, segmented in {time.perf_counter() - start:.0f} s")
        for threshold in args.thresholds:
            mask = to_mask(prob, threshold) > 0
            dice, iou = dice_iou(mask, truth)
            print(
                f"threshold {threshold:g}: Dice {100 * dice:.2f} IoU {100 * iou:.2f} "
                f"foreground {100 * mask.mean():.2f} % (labels {100 * truth.mean():.2f} %)"
            )


if __name__ == "__main__":
    main()
