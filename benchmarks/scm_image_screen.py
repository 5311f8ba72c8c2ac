"""Screen: does the SCM gain from seeing the image as well as stage 1's probabilities? (not a test)

The SCM reads only a window of stage-1 probabilities (issue 13: most of what MPP changes is what it
cannot learn from those alone). This screen trains a second SCM on the same run's stage-1
probabilities and MPP targets, with one more input channel: the normalised image of the middle
slice, at the SCM's resolution. Both SCMs are then scored the same way (``predict_stack``, the
package's own inference loop, with and without the default smoothing) on the run's scored slices.

    python benchmarks/scm_image_screen.py --data-dir ../shared/data/epfl --run runs/val/run \\
        --output runs/scm_image_val --protocol val
    python benchmarks/scm_image_screen.py --data-dir ../shared/data/epfl --run runs/zsplit/run \\
        --output runs/scm_image_zsplit --protocol zsplit

``--run`` is a training run folder of ``benchmarks/epfl_recipe.py`` (or ``emseg train``): it holds
``stage1_prob.tif`` and ``mpp_mask.tif`` of its training stack and ``models/model.pt`` and
``models/scm.pt``. ``val``: the run was trained on the 32 protocol slices of the whole volume and
the 133 others are scored; ``zsplit``: it was trained on slices 0..split-1, the whole volume is
segmented and slices split..164 are scored. Writes ``screen.json`` to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigWorkflow
from monai.networks.nets import BasicUNet

from emseg_monai.data.datasets import StackSliceDataset
from emseg_monai.data.normalize import resize_slices, scaled_size
from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou, markdown_table
from emseg_monai.inference.predict import predict_stack
from emseg_monai.inference.settings import InferenceSettings
from emseg_monai.inference.stages import stage1 as run_stage1
from emseg_monai.io import read_mask, read_stack
from emseg_monai.networks.weights import load_weights
from emseg_monai.transforms.stacks import intensity_range, normalize_stack, to_mask
from emseg_monai.transforms.windows import extract_windows, scm_inputs

WINDOW = 15
DOWNSAMPLE = 2.0
FEATURES = (16, 16, 32, 64, 128, 16)


class ImageWindowDataset(StackSliceDataset):
    """``StackSliceDataset`` whose image is the probability window plus ``extra[z]`` (N + 1 channels)."""

    def __init__(self, extra: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.extra = extra

    def __getitem__(self, i: int) -> dict:
        z = int(self.indices[i % len(self.indices)])
        window = extract_windows(self.image, z, self.window).astype(np.float32)
        sample = {"image": np.concatenate([window, self.extra[z : z + 1]]), "slice": z}
        sample["label"] = np.asarray(self.label[z : z + 1], dtype=np.float32)
        return self.transform(sample)


class WithImage(torch.nn.Module):
    """Adds the image of each centre slice to the SCM's window; ``predict_stack`` feeds the centres
    in order, batch by batch (no flips, no tiles), so a counter knows which slices a batch holds."""

    def __init__(self, network: torch.nn.Module, image_small: np.ndarray) -> None:
        super().__init__()
        self.network, self.image, self.next = network, torch.from_numpy(image_small), 0

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        extra = self.image[self.next : self.next + batch.shape[0], None].to(batch)
        self.next += batch.shape[0]
        return self.network(torch.cat([batch, extra], dim=1))


def train_image_scm(args: argparse.Namespace, run: Path, image_file: Path, labeled: str, out: Path) -> float:
    """Train the N + 1 channel SCM with the shipped SCM recipe; returns seconds."""
    import scm_image_screen  # this file once more, under the name the config's _target_ uses

    root = Path(__file__).resolve().parent.parent / "bundle"  # this checkout's bundle
    overrides = {
        "bundle_root": str(root),
        "image_file": str(image_file),
        "labeled_slices": labeled,
        "val_slices": "none",
        "output_dir": str(out),
        "ckpt_dir": str(out / "models"),
        "prob_file": str(run / "stage1_prob.tif"),
        "target_file": str(run / "mpp_mask.tif"),
        "stack#label_file": None,
        "precision": args.precision,
        "seed": args.seed,
        "ckpt_name": "scm_image.pt",
        "run_name": "scm_image",
        "in_channels": WINDOW + 1,
        "train#dataset#_target_": "scm_image_screen.ImageWindowDataset",
        "train#dataset#window": WINDOW,
        "train#dataset#extra": "$scm_image_screen.EXTRA",
        "validate#dataset#window": WINDOW,
        "device": "cpu",
    }
    if args.epochs:
        overrides["epochs"] = args.epochs
    prob = read_stack(run / "stage1_prob.tif")
    size = scaled_size(prob.shape[1:], DOWNSAMPLE)
    scm_image_screen.EXTRA = resize_slices(normalize_stack(read_stack(image_file)), size)
    configs = [str(root / "configs" / name) for name in ("train.yaml", "scm_train.yaml")]
    workflow = ConfigWorkflow(
        config_file=configs,
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=None,
        **overrides,
    )
    workflow.parser["imports"] = [*workflow.parser["imports"], "$import scm_image_screen"]
    start = time.perf_counter()
    workflow.initialize()
    try:
        workflow.run()
    finally:
        workflow.finalize()
    return time.perf_counter() - start


def scm_network(path: Path, channels: int) -> torch.nn.Module:
    net = BasicUNet(spatial_dims=2, in_channels=channels, out_channels=1, features=FEATURES)
    return load_weights(net, path).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--protocol", choices=("val", "zsplit"), default="val")
    parser.add_argument("--split", type=int, default=110)
    parser.add_argument("--step", type=int, default=5)
    parser.add_argument("--labeled", default="0:156:5")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="SCM epochs (default: the config's); a smoke run uses 1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    data, run, out = Path(args.data_dir), Path(args.run), Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    image_file, truth = data / "training.tif", read_mask(data / "training_groundtruth.tif")
    n = truth.shape[0]
    record: dict = {"options": vars(args)}
    if args.protocol == "val":
        labeled, train_image = args.labeled, image_file
        scored = complement(parse_slice_spec(labeled, n), n)
    else:
        labeled, train_image = f"0:{args.split}:{args.step}", run.parent / "train_part_image.tif"
        scored = np.arange(args.split, n)
    weights = out / "models" / "scm_image.pt"
    if not weights.is_file():
        record["train_seconds"] = train_image_scm(args, run, train_image, labeled, out)
    image = read_stack(image_file)
    if args.protocol == "val":
        prob = read_stack(run / "stage1_prob.tif")
    else:  # stage 1 of the whole volume, as ``emseg segment`` runs it (no flips before the SCM)
        settings = InferenceSettings(stage1_downsample=DOWNSAMPLE, scm_downsample=DOWNSAMPLE)
        net1 = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=FEATURES)
        prob = run_stage1(
            load_weights(net1, run / "models" / "model.pt").eval(),
            image,
            settings,
            intensity_range(image),
            progress=False,
            scm_follows=True,
        )
    size = scaled_size(image.shape[1:], DOWNSAMPLE)
    image_small = resize_slices(normalize_stack(image), size)
    rows = [("stage 1", *dice_iou(to_mask(prob) > 0, truth, scored))]
    prepare = partial(scm_inputs, input_kind="prob", threshold=0.5)
    for smoothing in (0.0, 1.5):
        for name in ("SCM (probabilities)", "SCM (probabilities + image)"):
            if "image" in name:
                net = WithImage(scm_network(weights, WINDOW + 1), image_small)
            else:
                net = scm_network(run / "models" / "scm.pt", WINDOW)
            final = predict_stack(
                net, prob, WINDOW, DOWNSAMPLE, 4, "cpu", False, name, False, prepare=prepare, smoothing=smoothing
            )
            rows.append((f"{name}, smoothing {smoothing}", *dice_iou(to_mask(final) > 0, truth, scored)))
    record["scores"] = {name: {"dice": d, "iou": i} for name, d, i in rows}
    (out / "screen.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"\n{args.protocol}: labeled {labeled}, scored {len(scored)} slices")
    print(markdown_table(rows, header=("output", "Dice (%)", "IoU (%)")))


if __name__ == "__main__":
    main()
