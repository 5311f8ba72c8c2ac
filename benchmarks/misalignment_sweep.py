"""How much section-to-section shift the SCM's smoothing along Z stands, and what the run measures.

EPFL kept at every ``--every``-th slice (40 nm sections at 8) is shifted section by section in Y
and X by a random residual (normal, standard deviation S px, at most 24, image and label together,
cropped to 720 x 976), for each S of ``--stds``. For each stack the script prints the upper
quartile of the neighbouring-section shifts that a training run measures
(``io.alignment.upper_shift_quartile``), then Dice on the slices the run did not label
(``--labeled``, default every 4th) for stage 1 and for the SCM (forced on) with each ``Z,YX`` pair
of smoothing sigmas. ``--models`` is a run trained on the aligned stack, e.g. one of
``benchmarks/generalisation.py --stacks epfl8``::

    python benchmarks/misalignment_sweep.py --data-dir ../shared/data/epfl --models runs/gen/epfl8 \\
        --stds 0,2,3,4,6 --pairs 1,1 0,1

The same slices are labeled in the run and here, so no scored slice was trained on. Not a test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou
from emseg_monai.inference.stages import segment
from emseg_monai.io import read_mask, read_stack
from emseg_monai.io.alignment import upper_shift_quartile
from emseg_monai.workflows import load_bundle_networks

MAX_SHIFT = 24  # px: the crop margin


def shifted_sections(image: np.ndarray, label: np.ndarray, std: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each (Y, X) section of ``image`` and ``label`` shifted by its own random offset; (Z, Y - 48, X - 48)."""
    rng = np.random.default_rng(seed)
    shifts = np.clip(np.rint(rng.normal(0, std, (image.shape[0], 2))), -MAX_SHIFT, MAX_SHIFT).astype(int)
    h, w = image.shape[1] - 2 * MAX_SHIFT, image.shape[2] - 2 * MAX_SHIFT
    crops = [(MAX_SHIFT + dy, MAX_SHIFT + dx) for dy, dx in shifts]
    return tuple(np.stack([a[z, y : y + h, x : x + w] for z, (y, x) in enumerate(crops)]) for a in (image, label))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", required=True, help="folder with EPFL's training.tif and training_groundtruth.tif"
    )
    parser.add_argument("--models", required=True, help="a run trained on the aligned stack")
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--labeled", default="every:4", help="the run's labeled slices: the others are scored")
    parser.add_argument("--stds", default="0,2,3,4,6", help="shift standard deviations, px (comma-separated)")
    parser.add_argument("--pairs", nargs="+", default=["1,1", "0,1"], help="Z,YX smoothing sigmas")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = Path(args.data_dir)
    image = read_stack(data / "training.tif")[:: args.every]
    label = read_mask(data / "training_groundtruth.tif")[:: args.every]
    scored = complement(parse_slice_spec(args.labeled, image.shape[0]), image.shape[0])
    stage1, scm, settings, _ = load_bundle_networks(args.models, use_scm=True)
    pairs = [tuple(float(v) for v in pair.split(",")) for pair in args.pairs]
    print(
        "| shift std (px) | upper quartile (px) | stage 1 | "
        + " | ".join(f"Z {z:g}, YX {y:g}" for z, y in pairs)
        + " |"
    )
    print("|---:|---:|---:|" + "---:|" * len(pairs))
    for std in (float(v) for v in args.stds.split(",")):
        start = time.perf_counter()
        stack, truth = shifted_sections(image, label > 0, std, args.seed)
        quartile = upper_shift_quartile(stack)
        scores, first = [], None
        for along_z, yx in pairs:
            out = segment(stack, stage1, scm, settings.replace(smoothing=yx, smoothing_z=along_z), progress=False)
            scores.append(100 * dice_iou(out["final_mask"][scored] > 0, truth[scored])[0])
            first = out["stage1_prob"]
        base = 100 * dice_iou(first[scored] >= 128, truth[scored])[0]
        cells = " | ".join(f"{s:.2f}" for s in scores)
        print(f"| {std:g} | {quartile:.1f} | {base:.2f} | {cells} |  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
