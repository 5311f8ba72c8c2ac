"""The SCM output's smoothing split into its Z sigma and its Y/X sigma, scored on unlabeled slices.

For thick and misaligned sections (docs/results.md, "A rough serial-section stack"): a run's
stage 1 and SCM (the SCM forced on, whatever the run's check decided) segment the stack once per
pair of sigmas (``InferenceSettings(smoothing=YX, smoothing_z=Z)``); each line prints Dice and IoU
on the slices ``--score`` names, and the time; several runs are scored one after the other.
Example, on a run of ``benchmarks/generalisation.py``::

    python benchmarks/smoothing_axes.py runs/gen_rough/epfl8rough --image runs/gen_rough/data_epfl8rough/image.tif \\
        --truth runs/gen_rough/data_epfl8rough/label.tif --score rest-of:every:4 --pairs 1,1 0,1 0,1.5 0.5,1.5

Each pair is ``Z,YX`` (slices, SCM pixels). ``--flips`` scores every pair with the final stage's 4
flips averaged as well (``emseg segment --flips``), stage 1 alone with its flips, and the SCM (the
first pair's sigmas) reading flip-averaged stage-1 probabilities (``stage1_flips``; what ``--flips``
did until emseg-monai 0.8.4). Not a test.
"""

from __future__ import annotations

import time

import numpy as np
from ensemble import read_scored, runs_parser  # benchmarks/ensemble.py: this script's folder is on sys.path

from emseg_monai.evaluation import dice_iou
from emseg_monai.inference.stages import segment
from emseg_monai.workflows import load_bundle_networks


def main() -> None:
    parser = runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", required=True, help="Z,YX sigmas (slices, SCM pixels)")
    parser.add_argument("--flips", action="store_true", help="also score each pair, and stage 1, with test-time flips")
    args = parser.parse_args()
    try:
        pairs = [tuple(float(v) for v in pair.split(",")) for pair in args.pairs]
    except ValueError:
        raise SystemExit(f"--pairs takes Z,YX sigmas such as 1,1.5, got {args.pairs}") from None
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"--pairs takes Z,YX sigmas such as 1,1.5, got {args.pairs}")
    image, truth, scored = read_scored(args)
    for run in args.runs:
        score_run(run, image, truth, scored, pairs, args.flips)


def score_run(
    run: str, image: np.ndarray, truth: np.ndarray, scored: np.ndarray, pairs: list[tuple[float, float]], flips: bool
) -> None:
    """Print one run's lines: each (Z, YX) pair (and with ``flips`` each again with flips), then stage 1."""
    stage1, scm, settings, _ = load_bundle_networks(run, use_scm=True)
    settings = settings.replace(stage1_flips=False)  # one pass unless a line says flips (thick runs write true)
    print(f"{run}: window {settings.window}, the run's smoothing {settings.smoothing} / {settings.smoothing_z}")
    result = None
    for flipped in (False, True) if flips else (False,):
        for along_z, yx in pairs:
            start = time.perf_counter()
            chosen = settings.replace(smoothing=yx, smoothing_z=along_z, use_scm=True, flips=flipped)
            result = segment(image, stage1, scm, chosen, progress=False)
            dice, iou = dice_iou(result["final_mask"][scored] > 0, truth[scored])
            seconds = time.perf_counter() - start
            named = ", flips" if flipped else ""
            print(f"Z {along_z:g}, YX {yx:g}{named}: Dice {100 * dice:.2f} IoU {100 * iou:.2f} ({seconds:.0f} s)")
    dice, iou = dice_iou(result["stage1_prob"][scored] >= 128, truth[scored])
    print(f"stage 1: Dice {100 * dice:.2f} IoU {100 * iou:.2f}")
    if flips:
        alone = segment(image, stage1, None, settings.replace(use_scm=False, flips=True), progress=False)
        dice, iou = dice_iou(alone["final_mask"][scored] > 0, truth[scored])
        print(f"stage 1, flips: Dice {100 * dice:.2f} IoU {100 * iou:.2f}")
        along_z, yx = pairs[0]
        fed = settings.replace(smoothing=yx, smoothing_z=along_z, use_scm=True, stage1_flips=True)
        dice, iou = dice_iou(segment(image, stage1, scm, fed, progress=False)["final_mask"][scored] > 0, truth[scored])
        print(f"Z {along_z:g}, YX {yx:g} on flipped stage 1: Dice {100 * dice:.2f} IoU {100 * iou:.2f}")


if __name__ == "__main__":
    main()
