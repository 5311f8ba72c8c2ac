"""Small ensembles of training runs on one stack: each run alone against the mean of their probabilities.

For issue 13's ensemble lever. Each run is a bundle folder (``emseg train`` or
``benchmarks/epfl_recipe.py`` output); every one segments the whole stack (stage 1, then its SCM
where the run uses one), and the table scores, on the given slices:

- each run alone (stage 1 and final, as ``emseg segment`` writes them);
- ``mean of stage 1``: the runs' stage-1 probabilities averaged, thresholded;
- ``mean of finals``: the runs' final probabilities averaged, thresholded (the ensemble a user would
  run: K times the segmentation time);
- ``mean of stage 1, then run 1's SCM``: the averaged stage-1 probabilities fed to the first run's
  SCM (K stage-1 passes, one SCM pass).

Example (the two validation seeds of the shipped recipe, scored on the 133 unlabeled slices)::

    python benchmarks/ensemble.py --image ../shared/data/epfl/training.tif \\
        --truth ../shared/data/epfl/training_groundtruth.tif --score rest-of:0:156:5 \\
        runs/recipe_bf16_e40_s0/run runs/recipe_bf16_e40_s1/run

``--score`` takes a slice spec (``110:165`` for the Z-split's unseen slices) or ``rest-of:SPEC``
(every slice not in SPEC). Prints a table; not a test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou, markdown_table
from emseg_monai.inference.inferer import StackInferer
from emseg_monai.inference.stages import scm, to_mask
from emseg_monai.io import read_mask, read_stack
from emseg_monai.workflows import load_bundle_networks


def runs_parser(description: str) -> argparse.ArgumentParser:
    """Arguments of a script that scores bundle folders on one stack: runs, --image, --truth, --score."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="+", help="bundle folders (bundle/ or training runs)")
    parser.add_argument("--image", required=True, help="(Z, Y, X) image stack")
    parser.add_argument("--truth", required=True, help="ground-truth mask stack of the same shape")
    parser.add_argument("--score", required=True, help="slices to score: a spec, or rest-of:SPEC")
    return parser


def read_scored(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, truth, scored slice indices) of ``runs_parser``'s arguments; exits if the shapes differ."""
    image, truth = read_stack(args.image), read_mask(args.truth)
    if image.shape != truth.shape:
        raise SystemExit(f"image {image.shape} and truth {truth.shape} differ in shape")
    return image, truth, scored_slices(args.score, image.shape[0])


def parse_args() -> argparse.Namespace:
    parser = runs_parser(__doc__.splitlines()[0])
    parser.add_argument("--backend", default="onnx", help="onnx (default) or torch")
    return parser.parse_args()


def scored_slices(spec: str, n: int) -> np.ndarray:
    """The slice indices of ``spec`` (``rest-of:SPEC``: those not in SPEC) in a stack of ``n``."""
    if spec.startswith("rest-of:"):
        return complement(parse_slice_spec(spec[len("rest-of:") :], n), n)
    return np.asarray(parse_slice_spec(spec, n))


def main() -> None:
    args = parse_args()
    image, truth, scored = read_scored(args)
    rows, seconds = [], []
    sum1 = sum_final = 0.0  # running sums of the probabilities (not K float copies of the stack)
    first_scm = None
    for k, run in enumerate(args.runs, 1):
        stage1_net, scm_net, settings, _ = load_bundle_networks(Path(run), backend=args.backend)
        inferer = StackInferer(settings, scm_net, progress=False)
        start = time.perf_counter()
        final, prob1 = inferer.segment_array(image, stage1_net)
        seconds.append(time.perf_counter() - start)
        if first_scm is None and scm_net is not None:
            first_scm = (inferer.ready(scm_net), settings)
        sum1 = sum1 + prob1.astype(np.float32)
        sum_final = sum_final + final.astype(np.float32)
        rows.append((f"run {k} stage 1", *dice_iou(to_mask(prob1, settings.threshold), truth, scored)))
        rows.append(
            (f"run {k} final ({seconds[-1]:.0f} s)", *dice_iou(to_mask(final, settings.threshold), truth, scored))
        )
    mean1 = np.rint(sum1 / len(args.runs)).astype(np.uint8)
    rows.append(("mean of stage 1", *dice_iou(to_mask(mean1, settings.threshold), truth, scored)))
    mean_final = np.rint(sum_final / len(args.runs)).astype(np.uint8)
    rows.append(
        (f"mean of finals ({sum(seconds):.0f} s)", *dice_iou(to_mask(mean_final, settings.threshold), truth, scored))
    )
    if first_scm is not None:
        network, first_settings = first_scm
        refined = scm(network, mean1, first_settings, progress=False)
        rows.append(
            ("mean of stage 1, then run 1's SCM", *dice_iou(to_mask(refined, first_settings.threshold), truth, scored))
        )
    print(f"{len(args.runs)} runs, {len(scored)} slices scored ({args.score})\n")
    print(markdown_table(rows, header=("output", "Dice (%)", "IoU (%)")))


if __name__ == "__main__":
    main()
