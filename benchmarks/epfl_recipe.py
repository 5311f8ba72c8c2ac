"""Train one recipe on the EPFL training volume and score it (prints a table; not a test).

Two protocols (``--protocol``):

- ``val``: both stages trained with the protocol's 32 labeled slices (0, 5, ..., 155); stage 1,
  the MPP targets and the final masks (stage 1 + SCM, what ``emseg segment`` writes) scored on the
  133 other slices, whose labels are never used;
- ``zsplit``: both stages trained on slices 0..109 only (labeled 0, 5, ..., 105); the whole stack
  segmented and slices 110..164, which neither stage saw, scored. That is how an unseen volume
  behaves, unlike the validation slices, which the SCM trains on through MPP targets.

    python benchmarks/epfl_recipe.py --data-dir ../shared/data/epfl --output runs/val --protocol val
    python benchmarks/epfl_recipe.py --data-dir ../shared/data/epfl --output runs/zsplit --protocol zsplit

Reads ``training.tif`` and ``training_groundtruth.tif`` from ``--data-dir``. Options left out take
the shipped recipe (bundle/configs, bundle/models/README.md); the GPU recipe of the paper's wide
network is ``--features 64,128,256,512,1024,64 --downsample 1 --crop-size 512 --device cuda``.
Writes ``recipe.json`` (scores, times, options) to ``--output``.

``--stage1-set KEY=JSON`` and ``--scm-set KEY=JSON`` change one stage's config only (repeatable),
e.g. ``--stage1-set 'train#augmentation=[]'`` (stage 1 without augmentation) or
``--stage1-set piecewise_affine_prob=0``; the screen in docs/results.md used them. Its 2.5D rows
(``--stage1-set stage1_window=5``) need ``benchmarks/patches/stage1_window.diff`` applied first
(``git apply``): raw slices z-2..z+2 as stage 1's input, not merged since it did not help.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou, markdown_table
from emseg_monai.io import read_mask, read_stack, write_stack
from emseg_monai.training.pipeline import train_pipeline
from emseg_monai.workflows import segment_file

STAGE_OPTIONS = ("epochs", "iterations_per_epoch", "batch_size", "crop_size", "precision", "num_workers", "seed")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--protocol", choices=("val", "zsplit"), default="val")
    parser.add_argument("--split", type=int, default=110, help="zsplit: train on slices 0..split-1, score the rest")
    parser.add_argument("--labeled", default="0:156:5", help="val: the labeled slices (the protocol's 32)")
    parser.add_argument("--step", type=int, default=5, help="zsplit: labeled slices 0, step, 2*step, ... below split")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--scm-epochs", type=int)
    parser.add_argument("--iterations", dest="iterations_per_epoch", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--crop-size", type=int)
    parser.add_argument("--precision")
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--downsample", type=float)
    parser.add_argument("--features", help="BasicUNet widths, comma-separated (6 numbers)")
    parser.add_argument("--device", help="cpu, cuda (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stage1-set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="train.yaml override for stage 1 only, e.g. stage1_window=5 or 'train#augmentation=[]' (repeatable)",
    )
    parser.add_argument(
        "--scm-set", action="append", default=[], metavar="KEY=JSON", help="override for the SCM only (repeatable)"
    )
    parser.add_argument("--reuse", action="store_true", help="skip training where the weights already exist")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --output (steps already done are skipped)"
    )
    return parser.parse_args()


def train(args: argparse.Namespace, image: Path, label: Path, labeled: str, run: Path) -> dict[str, float]:
    """Train both stages into ``run`` with the options given (the rest: the configs' defaults)."""
    stage1 = {k: getattr(args, k) for k in STAGE_OPTIONS if getattr(args, k) is not None}
    stage1["val_slices"] = "none"  # no label outside ``labeled`` is looked at during training
    scm = dict(stage1)
    if args.scm_epochs is not None:
        scm["epochs"] = args.scm_epochs
    stage1.update(_assignments(args.stage1_set))
    scm.update(_assignments(args.scm_set))
    shared = {"downsample": args.downsample}
    if args.features:
        shared["features"] = [int(f) for f in args.features.split(",")]
    result = train_pipeline(
        image, label, labeled, run, stage1=stage1, scm=scm, shared=shared, device=args.device, resume=args.resume
    )
    return result["seconds"]


def _assignments(items: list[str]) -> dict:
    """``KEY=JSON`` strings as a dict (a value that is not JSON stays text)."""
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data, out = Path(args.data_dir), Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    image_file, label_file = data / "training.tif", data / "training_groundtruth.tif"
    truth = read_mask(label_file)
    n = truth.shape[0]
    run = out / "run"
    record: dict = {"options": {k: v for k, v in vars(args).items() if v is not None}}
    trained = args.reuse and (run / "models" / "scm.pt").is_file()
    rows = []
    if args.protocol == "val":
        labeled = args.labeled
        scored = complement(parse_slice_spec(labeled, n), n)
        if not trained:
            record["train_seconds"] = train(args, image_file, label_file, labeled, run)
        outputs = (("stage 1", "stage1_mask.tif"), ("MPP targets", "mpp_mask.tif"), ("stage 1 + SCM", "final_mask.tif"))
        for name, file in outputs:
            dice, iou = dice_iou(read_mask(run / file), truth, scored)
            rows.append((name, dice, iou))
    else:
        if not 0 < args.split < n:
            raise SystemExit(f"--split must be in 1..{n - 1}, got {args.split}")
        labeled = f"0:{args.split}:{args.step}"
        scored = np.arange(args.split, n)
        if not trained:
            part_image, part_label = out / "train_part_image.tif", out / "train_part_label.tif"
            write_stack(part_image, read_stack(image_file)[: args.split])
            write_stack(part_label, (truth[: args.split] * 255).astype(np.uint8))
            record["train_seconds"] = train(args, part_image, part_label, labeled, run)
        for name, use_scm in (("stage 1", False), ("stage 1 + SCM", True)):
            pred_file = out / ("pred_scm.tif" if use_scm else "pred_stage1.tif")
            start = time.perf_counter()
            device = {"device": args.device} if args.device else {}
            segment_file(image_file, pred_file, run, use_scm=use_scm, overwrite=True, **device)
            record[f"segment_seconds {name}"] = time.perf_counter() - start
            dice, iou = dice_iou(read_mask(pred_file), truth, scored)
            rows.append((name, dice, iou))
    record["labeled"] = labeled
    record["scored"] = f"{len(scored)} slices"
    record["scores"] = {name: {"dice": dice, "iou": iou} for name, dice, iou in rows}
    (out / "recipe.json").write_text(json.dumps(record, indent=2))
    print(f"\n{args.protocol}: labeled {labeled}, scored {len(scored)} slices, {json.dumps(record['options'])}")
    print(f"training seconds: {json.dumps(record.get('train_seconds', 'reused'))}\n")
    print(markdown_table(rows, header=("output", "Dice (%)", "IoU (%)")))


if __name__ == "__main__":
    main()
