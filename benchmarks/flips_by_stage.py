"""Test-time flips stage by stage: which stage should average its 4 flips? (prints a table; not a test)

For each run (a bundle folder), segments the stack with stage 1 with and without flips, then the
SCM with and without flips on each of those, and scores every combination on the given slices,
with each step's time on this machine. ``emseg segment --flips`` flips the final stage only (the
SCM where it runs); this script measures that choice against the others.

    python benchmarks/flips_by_stage.py runs/zsplit_bf16_e30_s0/run --image ../shared/data/epfl/training.tif \\
        --truth ../shared/data/epfl/training_groundtruth.tif --score 110:165

``--score`` takes a slice spec or ``rest-of:SPEC``, as in ``benchmarks/ensemble.py``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ensemble import read_scored, runs_parser  # benchmarks/ensemble.py: this script's folder is on sys.path

from emseg_monai.evaluation import dice_iou, markdown_table
from emseg_monai.inference.stages import scm, stage1, to_mask
from emseg_monai.transforms.stacks import intensity_range
from emseg_monai.workflows import load_bundle_networks


def combinations(first, second, settings, image, value_range) -> Iterator[tuple[str, np.ndarray, float]]:
    """(name, probabilities uint8 (Z, Y, X), seconds) of stage 1 with and without flips, then the SCM's four."""
    probs = {}
    for flips in (False, True):
        start = time.perf_counter()
        # scm_follows left False: stage 1 takes the flips asked for here, whatever runs after it
        one_or_four = dataclasses.replace(settings, flips=flips, stage1_flips=False)  # thick runs write true
        probs[flips] = stage1(first, image, one_or_four, value_range, progress=False)
        yield f"stage 1{' with flips' if flips else ''}", probs[flips], time.perf_counter() - start
    for flips1 in (False, True):
        for flips2 in (False, True):
            start = time.perf_counter()
            final = scm(second, probs[flips1], dataclasses.replace(settings, flips=flips2), progress=False)
            name = f"stage 1 {'with' if flips1 else 'without'} flips + SCM {'with' if flips2 else 'without'}"
            yield name, final, time.perf_counter() - start


def main() -> None:
    args = runs_parser(__doc__.splitlines()[0]).parse_args()
    image, truth, scored = read_scored(args)
    value_range = intensity_range(image)
    for run in args.runs:
        first, second, settings, root = load_bundle_networks(run)
        if second is None:
            raise SystemExit(f"{run}: this bundle has no SCM to compare flips on")
        rows = []
        for name, prob, seconds in combinations(first, second, settings, image, value_range):
            dice, iou = dice_iou(to_mask(prob, settings.threshold) > 0, truth, scored)
            rows.append((f"{name} ({seconds:.0f} s)", dice, iou))
            print(f"{rows[-1][0]}: Dice {100 * dice:.2f}", flush=True)
        print(f"\n{Path(root)}: {len(scored)} slices scored; (s): that step's time alone\n")
        print(markdown_table(rows, ("stages", "Dice (%)", "IoU (%)")))


if __name__ == "__main__":
    main()
