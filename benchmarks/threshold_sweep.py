"""Dice of a bundle's final probabilities at several thresholds, scored on the unlabeled slices.

A bundle's masks are its final probabilities (the SCM's, smoothed, or stage 1's where the SCM is
not used) at ``threshold`` (0.5 by default). This segments the stack once with the bundle's own
settings and scores the same probabilities at each threshold given, so the lines differ only by the
threshold. Example, the shipped bundle on EPFL's 133 unlabeled slices::

    python benchmarks/threshold_sweep.py bundle ../shared/data/epfl/training.tif \\
        ../shared/data/epfl/training_groundtruth.tif 0:156:5 0.3 0.4 0.5 0.6

``--scm`` forces the SCM on where the run's check kept stage 1; ``--slices`` scores other slices
(a slice spec, e.g. ``110:165`` for the Z-split's unseen part) instead of those outside ``labeled``.
Prints one line per threshold: Dice, IoU, and the foreground share against the labels'. Not a test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou
from emseg_monai.inference.stages import segment
from emseg_monai.io import read_mask, read_stack
from emseg_monai.transforms.stacks import to_mask
from emseg_monai.workflows import load_bundle_networks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a bundle folder (bundle/ or a training run)")
    parser.add_argument("image")
    parser.add_argument("label")
    parser.add_argument("labeled", help="the run's labeled slices (a slice spec): the others are scored")
    parser.add_argument("thresholds", nargs="+", type=float)
    parser.add_argument("--scm", action="store_true", help="use the SCM even where the run's check kept stage 1")
    parser.add_argument("--slices", help="score these slices (a slice spec) instead of the unlabeled ones")
    args = parser.parse_args()
    image, truth = read_stack(args.image), read_mask(args.label) > 0
    depth = truth.shape[0]
    labeled = parse_slice_spec(args.labeled, depth)
    scored = parse_slice_spec(args.slices, depth) if args.slices else complement(labeled, depth)
    stage1, scm, settings, _ = load_bundle_networks(args.run, **({"use_scm": True} if args.scm else {}))
    start = time.perf_counter()
    prob = segment(image, stage1, scm, settings, progress=False)["final_prob"]
    seconds = time.perf_counter() - start
    share = truth[scored].mean()
    used = "on" if settings.use_scm else "off"
    print(f"{args.run}: {scored.size} slices scored, SCM {used}, segmented in {seconds:.0f} s")
    for threshold in args.thresholds:
        mask = to_mask(prob[scored], threshold) > 0
        dice, iou = dice_iou(mask, truth[scored])
        print(
            f"threshold {threshold:g}: Dice {100 * dice:.2f} IoU {100 * iou:.2f} "
            f"foreground {100 * mask.mean():.2f} % (labels {100 * share:.2f} %)"
        )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
