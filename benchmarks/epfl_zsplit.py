"""Z-split check on the EPFL training volume (prints a table; not a test).

Both stages are trained on the first ``--split`` slices only (their labeled slices ``0:split:5``),
then the whole stack is segmented and the slices from ``--split`` on, which neither stage saw, are
scored. That is how an unseen volume behaves, unlike the 133 validation slices the SCM trains on
(through MPP targets):

    python benchmarks/epfl_zsplit.py --data-dir ../shared/data/epfl --output runs/zsplit

Reads ``training.tif`` and ``training_groundtruth.tif`` from ``--data-dir``. The recipe defaults
are those of the shipped weights (bundle/models/README.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from emseg_monai.evaluation import dice_iou, markdown_table
from emseg_monai.io import read_mask, read_stack, write_stack
from emseg_monai.training.pipeline import train_pipeline
from emseg_monai.workflows import segment_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--split", type=int, default=110, help="train on slices 0..split-1, score split..end")
    parser.add_argument("--step", type=int, default=5, help="labeled slices 0, step, 2*step, ... below split")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--scm-epochs", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--downsample", type=float, default=2)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="skip training where the weights already exist")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data, out = Path(args.data_dir), Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    image_file, label_file = data / "training.tif", data / "training_groundtruth.tif"
    truth = read_mask(label_file)
    n = truth.shape[0]
    if not 0 < args.split < n:
        raise SystemExit(f"--split must be in 1..{n - 1}, got {args.split}")
    part_image, part_label = out / "train_part_image.tif", out / "train_part_label.tif"
    if not (part_image.is_file() and part_label.is_file()):
        write_stack(part_image, read_stack(image_file)[: args.split])
        write_stack(part_label, (truth[: args.split] * 255).astype(np.uint8))
    labeled = f"0:{args.split}:{args.step}"
    run = out / "run"
    times: dict[str, float] = {}
    if not (args.reuse and (run / "models" / "scm.pt").is_file()):
        common = {
            "epochs": args.epochs,
            "iterations_per_epoch": args.iterations,
            "crop_size": args.crop_size,
            "val_slices": "none",  # nothing of the scored slices, and no other labels, is looked at
            "seed": args.seed,
        }
        shared = {"downsample": args.downsample}
        times = train_pipeline(
            part_image,
            part_label,
            labeled,
            run,
            stage1=common,
            scm={**common, "epochs": args.scm_epochs},
            shared=shared,
        )["seconds"]
    scored = np.arange(args.split, n)
    rows, record = [], {"labeled": labeled, "scored": f"{args.split}..{n - 1}", "train_seconds": times}
    for name, use_scm in (("stage 1", False), ("stage 1 + SCM", True)):
        pred_file = out / ("pred_scm.tif" if use_scm else "pred_stage1.tif")
        start = time.perf_counter()
        segment_file(image_file, pred_file, run, use_scm=use_scm, overwrite=True)
        dice, iou = dice_iou(read_mask(pred_file), truth, scored)
        rows.append((name, dice, iou))
        record[name] = {"dice": dice, "iou": iou, "segment_seconds": time.perf_counter() - start}
        print(f"{name}: Dice {100 * dice:.2f}% IoU {100 * iou:.2f}%", flush=True)
    (out / "zsplit.json").write_text(json.dumps(record, indent=2))
    print(f"\nTrained on slices 0..{args.split - 1} (labeled {labeled}); scored on slices {args.split}..{n - 1}:\n")
    print(markdown_table(rows, header=("method", "Dice (%)", "IoU (%)")))


if __name__ == "__main__":
    main()
