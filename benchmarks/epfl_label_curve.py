"""Label-count curve on the EPFL training volume (prints a table, writes a PNG; not a test).

For each count K, stage 1 is trained on K slices spread evenly over the protocol's 32 labeled
slices (0, 5, ..., 155), with the same seed and iteration budget, and scored on the 133 other
slices (the validation set; their labels are never used in training):

    python benchmarks/epfl_label_curve.py --data-dir ../shared/data/epfl --output runs/label_curve \
        --counts 2 4 8 16 32 --plot docs/figures/epfl_label_curve.png

``--scm`` also trains MPP + SCM for each count (about 25 more minutes per count on 2 CPU cores).
Reads ``training.tif`` and ``training_groundtruth.tif`` from ``--data-dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from emseg_monai.data.slices import complement, evenly_spaced, parse_slice_spec
from emseg_monai.evaluation import dice_iou, markdown_table
from emseg_monai.io import read_mask
from emseg_monai.io.stacks import atomic_write
from emseg_monai.training.pipeline import train_pipeline
from emseg_monai.workflows import run_config, segment_file

PROTOCOL = "0:156:5"  # 0, 5, ..., 155: the protocol's 32 labeled slices


def plot_curve(path: Path, record: dict) -> None:
    """Write the Dice-versus-labeled-slices plot (PNG) of ``record`` (count -> scores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted(int(k) for k in record)
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for key, label, marker in (("stage1", "stage 1", "o"), ("scm", "stage 1 + SCM", "s")):
        points = [(k, 100 * record[str(k)][key]["dice"]) for k in counts if key in record[str(k)]]
        if points:
            ax.plot(*zip(*points), marker=marker, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(k) for k in counts])
    ax.set_xlabel("labeled slices (evenly spaced)")
    ax.set_ylabel("Dice on the 133 validation slices (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--counts", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--scm", action="store_true", help="also train and score MPP + SCM per count")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--downsample", type=float, default=2)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="float32", help="float32 or bf16 (training forward passes)")
    parser.add_argument("--plot", help="write the curve to this PNG")
    parser.add_argument("--reuse", action="store_true", help="skip training where the weights already exist")
    parser.add_argument("--resume", action="store_true", help="with --scm: continue interrupted runs in --output")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data, out = Path(args.data_dir), Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    image, label = data / "training.tif", data / "training_groundtruth.tif"
    truth = read_mask(label)
    protocol = parse_slice_spec(PROTOCOL, truth.shape[0])
    scored = complement(protocol, truth.shape[0])
    record_file = out / "label_curve.json"
    record = json.loads(record_file.read_text()) if args.reuse and record_file.is_file() else {}
    common = {
        "epochs": args.epochs,
        "iterations_per_epoch": args.iterations,
        "crop_size": args.crop_size,
        "val_slices": "none",  # the weights never depend on the scored slices' labels
        "seed": args.seed,
        "precision": args.precision,
    }
    shared = {"downsample": args.downsample}
    for count in args.counts:
        labeled = ",".join(str(int(z)) for z in protocol[evenly_spaced(count, protocol.size)])
        run = out / f"labels_{count:02d}"
        models = run / "models"
        models.mkdir(parents=True, exist_ok=True)
        entry = record.get(str(count), {})
        start = time.perf_counter()
        if args.scm:
            if not (args.reuse and (models / "scm.pt").is_file()):
                resume = args.resume and (models / "model.pt").is_file()
                entry["train_seconds"] = train_pipeline(
                    image, label, labeled, run, stage1=common, scm=common, shared=shared, resume=resume
                )["seconds"]
        elif not (args.reuse and (models / "model.pt").is_file()):
            run_config(
                ["train.yaml"],
                image_file=str(image),
                label_file=str(label),
                labeled_slices=labeled,
                output_dir=str(run),
                ckpt_dir=str(models),
                downsample=args.downsample,
                **common,
            )
            entry["train_seconds"] = time.perf_counter() - start
        entry["labeled"] = labeled
        for key, use_scm in (("stage1", False), ("scm", True)) if args.scm else (("stage1", False),):
            pred = run / f"pred_{key}.tif"
            # a run of train_pipeline is a bundle with its own settings; stage-1-only runs use the shipped configs
            bundle = run if args.scm else None
            extra = {} if args.scm else {"ckpt_dir": str(models), "stage1_downsample": args.downsample}
            segment_file(image, pred, bundle, use_scm=use_scm, overwrite=True, **extra)
            dice, iou = dice_iou(read_mask(pred), truth, scored)
            entry[key] = {"dice": dice, "iou": iou}
            print(f"{count} labeled slices, {key}: Dice {100 * dice:.2f}% IoU {100 * iou:.2f}%", flush=True)
        record[str(count)] = entry
        atomic_write(record_file, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    rows = []
    for k in sorted(record, key=int):
        for key, name in (("stage1", "stage 1"), ("scm", "stage 1 + SCM")):
            if key in record[k]:
                rows.append((f"{k} ({name})", record[k][key]["dice"], record[k][key]["iou"]))
    budget = f"{args.epochs} x {args.iterations} iterations"
    print(f"\nScored on the {scored.size} validation slices (voxels pooled); {budget}:\n")
    print(markdown_table(rows, header=("labeled slices", "Dice (%)", "IoU (%)")))
    if args.plot:
        plot_curve(Path(args.plot), record)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
