"""Regenerate the EPFL figures of docs/results.md with the shipped bundle.

    python benchmarks/epfl_figures.py --data-dir ../shared/data/epfl --output docs/figures

Segments the training volume with stage 1 only and with stage 1 + SCM (the bundle's
inference.yaml, as `emseg segment` does), then draws slice 92 of each (errors coloured, legend,
Dice of the slice) and Dice along Z of both with the labeled slices (0, 5, ..., 155) marked.
Prints the Dice of each on the 133 unlabeled slices.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation.figures import save_dice_along_z, save_overlay
from emseg_monai.evaluation.metrics import dice_iou
from emseg_monai.io.stacks import read_mask, read_stack
from emseg_monai.workflows import segment_file

LABELED = "0:156:5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", default="docs/figures")
    parser.add_argument("--slice", type=int, default=92)
    args = parser.parse_args()
    data, out = Path(args.data_dir), Path(args.output)
    image_file, truth = data / "training.tif", read_mask(data / "training_groundtruth.tif")
    labeled = parse_slice_spec(LABELED, truth.shape[0])
    unlabeled = complement(labeled, truth.shape[0])
    preds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, use_scm in (("stage 1", False), ("stage 1 + SCM", True)):
            path = Path(tmp) / f"{use_scm}.tif"
            segment_file(image_file, path, use_scm=use_scm)
            preds[name] = read_mask(path)
            dice, iou = dice_iou(preds[name], truth, unlabeled)
            print(f"{name}: Dice {100 * dice:.2f}% IoU {100 * iou:.2f}% on the {unlabeled.size} unlabeled slices")
    image = read_stack(image_file)
    z = args.slice
    for name, stem in (("stage 1", "stage1"), ("stage 1 + SCM", "scm")):
        path = out / f"epfl_overlay_z{z}_{stem}.png"
        print(f"wrote {save_overlay(path, image[z], preds[name][z], truth[z], z=z, title=name)}")
    plot = save_dice_along_z(out / "epfl_dice_along_z.png", preds, truth, labeled=np.asarray(labeled))
    print(f"wrote {plot}")


if __name__ == "__main__":
    main()
