"""The bioimage.io package of a weights bundle against ``emseg segment`` on the EPFL stack (prints a table).

    python benchmarks/bioimageio_epfl.py --data-dir ../shared/data/epfl --output runs/bioimageio

Exports the package (its test input: the middle of the EPFL stack), runs it through bioimageio.core
(TorchScript weights; ``--weights torchscript,onnx`` for both), whole and in blocks of
``--block-slices`` slices (each with the package's Z halo; 0: whole only), segments the same stack with
``emseg segment`` (the bundle's configs, torch backend), and scores all of them on the 133
unlabeled slices (labeled: 0, 5, ..., 155).
Writes ``bioimageio_epfl.json`` to ``--output``. Not a test: it needs the EPFL data and a few minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou
from emseg_monai.exchange.bioimageio import check_package, export_bioimageio, predict_with_package
from emseg_monai.io import read_mask, read_stack
from emseg_monai.workflows import segment_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--models", help="bundle folder (default: the shipped bundle)")
    parser.add_argument(
        "--weights",
        default="torchscript",
        help="weight formats run on the whole stack, comma-separated (the onnx graph holds every slice's "
        "activations at once)",
    )
    parser.add_argument("--block-slices", type=int, default=32, help="also run in blocks of this many slices")
    args = parser.parse_args()
    data, out = Path(args.data_dir), Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    image_file = data / "training.tif"
    image, truth = read_stack(image_file), read_mask(data / "training_groundtruth.tif")
    scored = complement(parse_slice_spec("0:156:5", image.shape[0]), image.shape[0])
    results: dict[str, dict] = {}

    start = time.perf_counter()
    package = export_bioimageio(out / "emseg_epfl.zip", args.models, sample=image_file, overwrite=True)
    results["export"] = {"seconds": round(time.perf_counter() - start, 1)}
    start = time.perf_counter()
    results["bioimageio test"] = {
        "status": check_package(package).status,
        "seconds": round(time.perf_counter() - start),
    }

    masks = {}
    start = time.perf_counter()
    segment_file(image_file, out / "segment.tif", args.models, overwrite=True, backend="torch", device="cpu")
    results["emseg segment"] = {"seconds": round(time.perf_counter() - start, 1)}
    masks["emseg segment"] = read_mask(out / "segment.tif")
    for weights in args.weights.split(","):
        start = time.perf_counter()
        masks[f"bioimageio.core ({weights})"] = predict_with_package(package, image, weights)
        results[f"bioimageio.core ({weights})"] = {"seconds": round(time.perf_counter() - start, 1)}
        if args.block_slices:
            name = f"bioimageio.core ({weights}, blocks of {args.block_slices} slices)"
            start = time.perf_counter()
            masks[name] = predict_with_package(package, image, weights, block_slices=args.block_slices)
            results[name] = {"seconds": round(time.perf_counter() - start, 1)}
    for name, mask in masks.items():
        dice, iou = dice_iou(mask[scored] > 0, truth[scored] > 0)
        same = float(np.mean((mask > 0) == (masks["emseg segment"] > 0)))
        results[name].update(dice=round(100 * dice, 2), iou=round(100 * iou, 2), voxels_as_segment=same)
    (out / "bioimageio_epfl.json").write_text(json.dumps(results, indent=1))
    print("| output | Dice (%) | IoU (%) | voxels as emseg segment | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name in masks:
        r = results[name]
        print(f"| {name} | {r['dice']:.2f} | {r['iou']:.2f} | {100 * r['voxels_as_segment']:.3f}% | {r['seconds']} |")
    print(f"\nexport {results['export']['seconds']} s; bioimageio test: {results['bioimageio test']}")


if __name__ == "__main__":
    main()
