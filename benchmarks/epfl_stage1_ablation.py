"""Stage-1 augmentation ablation on the EPFL training volume (prints a table; not a test).

Trains stage 1 (train.yaml) with the same seed and iteration count under each augmentation
variant, segments the whole stack with it, and scores the unlabeled slices (the validation set):

    python benchmarks/epfl_stage1_ablation.py --data-dir ../shared/data/epfl --output runs/ablation \
        --variants none affine piecewise

Variants: ``none`` (no augmentation at all), ``affine`` (90-degree rotations, flips, random
rotation), ``piecewise`` (``affine`` + the random piecewise affine warp, the config default).
Reads ``training.tif`` and ``training_groundtruth.tif`` from ``--data-dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou, markdown_table
from emseg_monai.io import read_mask
from emseg_monai.workflows import run_config

VARIANTS = {
    "none": {"train#augmentation": []},
    "affine": {"piecewise_affine_prob": 0.0},
    "piecewise": {},
}
LABELED = "0:156:5"  # 0, 5, ..., 155: the protocol's 32 labeled slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--labeled", default=LABELED)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--downsample", type=float, default=2)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="skip training where the weights already exist")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data, out = Path(args.data_dir), Path(args.output)
    image, label = data / "training.tif", data / "training_groundtruth.tif"
    truth = read_mask(label)
    unlabeled = complement(parse_slice_spec(args.labeled, truth.shape[0]), truth.shape[0])
    rows, record = [], {}
    for name in args.variants:
        run = out / name
        models = run / "models"
        models.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if not (args.reuse and (models / "model.pt").is_file()):
            run_config(
                ["train.yaml"],
                image_file=str(image),
                label_file=str(label),
                labeled_slices=args.labeled,
                output_dir=str(run),
                ckpt_dir=str(models),
                epochs=args.epochs,
                iterations_per_epoch=args.iterations,
                downsample=args.downsample,
                crop_size=args.crop_size,
                seed=args.seed,
                **VARIANTS[name],
            )
        train_s = time.perf_counter() - start
        mask_file = run / "stage1_mask.tif"
        run_config(
            ["inference.yaml"],
            image_file=str(image),
            output_file=str(mask_file),
            ckpt_dir=str(models),
            use_scm=False,
            stage1_downsample=args.downsample,
            overwrite=True,
        )
        dice, iou = dice_iou(read_mask(mask_file), truth, unlabeled)
        rows.append((name, dice, iou))
        record[name] = {
            "dice": dice,
            "iou": iou,
            "train_seconds": train_s,
            "epochs": args.epochs,
            "iterations_per_epoch": args.iterations,
            "seed": args.seed,
        }
        print(f"{name}: Dice {100 * dice:.2f}% IoU {100 * iou:.2f}% (training {train_s:.0f} s)", flush=True)
    (out / "ablation.json").write_text(json.dumps(record, indent=2))
    print(f"\nStage 1 on the {unlabeled.size} unlabeled slices (voxels pooled):\n")
    print(markdown_table(rows, header=("augmentation", "Dice (%)", "IoU (%)")))


if __name__ == "__main__":
    main()
