"""The embedded demo: the whole method on synthetic stacks the project generates itself."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.data.synthetic import make_synthetic_stack
from emseg_monai.evaluation.figures import save_dice_along_z, save_overlay
from emseg_monai.evaluation.metrics import dice_iou, markdown_table, write_per_slice_csv
from emseg_monai.io.stacks import atomic_write, read_mask, read_stack, write_stack
from emseg_monai.training.pipeline import train_pipeline
from emseg_monai.workflows import segment_file

logger = logging.getLogger(__name__)

# Sized to finish in a few minutes on 2 CPU cores.
DEMO_SHAPE = (40, 128, 128)
DEMO_LABELED = "every:4"
DEMO_VOXEL_NM = "5,5,5"  # the synthetic stacks are drawn isotropic
DEMO_SHARED = {"features": [16, 16, 32, 64, 128, 16], "downsample": 1, "scm_window": 7, "scm_input": "prob"}
DEMO_STAGE1 = {
    "epochs": 16,
    "iterations_per_epoch": 20,
    "batch_size": 8,
    "crop_size": 96,
    "val_interval": 4,
    "learning_rate": 0.003,
    "precision": "float32",  # the same figures on every machine (auto would differ by CPU)
}
DEMO_SCM = {
    "epochs": 12,
    "iterations_per_epoch": 20,
    "batch_size": 8,
    "crop_size": 96,
    "val_interval": 4,
    "learning_rate": 0.003,
    "precision": "float32",  # the same figures on every machine (auto would differ by CPU)
}
DEMO_MPP = {"min_size": 20, "spread_min_size": 30, "erosions_per_step": 1}


def run_demo(
    output_dir: str | Path,
    seed: int = 0,
    shape: tuple[int, int, int] = DEMO_SHAPE,
    stage1: dict[str, Any] | None = None,
    scm: dict[str, Any] | None = None,
    device: str | None = None,
) -> str:
    """Generate two synthetic stacks, train both stages on a few slices of the first, segment both.

    Writes everything under ``output_dir`` (data/, models/, stage files, per-slice CSVs, results.md)
    and returns the Markdown report: Dice and IoU of stage 1, stage 1 + MPP and stage 1 + SCM on the
    unlabeled slices of the training stack, and of stage 1 and stage 1 + SCM on a held-out stack.
    """
    start = time.perf_counter()
    out = Path(output_dir)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, stack_seed in (("train", seed), ("test", seed + 1)):
        image, label = make_synthetic_stack(shape, seed=stack_seed)
        files[name] = (write_stack(data / f"{name}_image.tif", image), write_stack(data / f"{name}_label.tif", label))
    logger.info("demo data: two synthetic stacks of %s in %s", shape, data)

    trained = train_pipeline(
        *files["train"],
        DEMO_LABELED,
        out,
        stage1={**DEMO_STAGE1, "seed": seed, **(stage1 or {})},
        scm={**DEMO_SCM, "seed": seed, **(scm or {})},
        mpp=DEMO_MPP,
        shared=DEMO_SHARED,
        device=device,
        command=f"emseg demo --output {out} --seed {seed}",
        voxel_size=DEMO_VOXEL_NM,
    )
    times = dict(trained["seconds"])
    for name in ("train", "test"):
        t0 = time.perf_counter()
        segment_file(
            files[name][0], out / f"{name}_final_mask.tif", out, save_stage1=True, device=device, overwrite=True
        )
        times[f"segment {name} stack"] = time.perf_counter() - t0

    truth = {name: read_mask(files[name][1]) for name in files}
    labeled = parse_slice_spec(DEMO_LABELED, shape[0])
    unlabeled = complement(labeled, shape[0])
    pred = {
        ("train", "stage 1"): read_mask(out / "train_final_mask_stage1_mask.tif"),
        ("train", "stage 1 + MPP"): read_mask(out / "mpp_mask.tif"),
        ("train", "stage 1 + SCM"): read_mask(out / "train_final_mask.tif"),
        ("test", "stage 1"): read_mask(out / "test_final_mask_stage1_mask.tif"),
        ("test", "stage 1 + SCM"): read_mask(out / "test_final_mask.tif"),
    }
    rows_train = [(m, *dice_iou(p, truth["train"], unlabeled)) for (s, m), p in pred.items() if s == "train"]
    rows_test = [(m, *dice_iou(p, truth["test"])) for (s, m), p in pred.items() if s == "test"]
    for (stack, method), p in pred.items():
        name = method.replace(" + ", "_").replace(" ", "")
        write_per_slice_csv(out / f"per_slice_{stack}_{name}.csv", p, truth[stack])
    z = shape[0] // 2 + 1
    test_image = read_stack(files["test"][0])
    for name, method in (("stage1", "stage 1"), ("scm", "stage 1 + SCM")):
        picture = out / f"overlay_test_{name}.png"
        save_overlay(picture, test_image[z], pred[("test", method)][z], truth["test"][z], z=z, title=method)
    save_dice_along_z(out / "dice_along_z_test.png", {m: p for (s, m), p in pred.items() if s == "test"}, truth["test"])
    total = time.perf_counter() - start
    report = "\n".join(
        [
            f"## emseg demo: synthetic stacks of {shape[0]} x {shape[1]} x {shape[2]} (Z, Y, X), seed {seed}",
            "",
            f"Trained on {labeled.size} labeled slices ({DEMO_LABELED}) of the training stack.",
            "",
            f"### Unlabeled slices of the training stack ({unlabeled.size} slices, voxels pooled)",
            "",
            markdown_table(rows_train),
            "",
            f"### Held-out stack (all {shape[0]} slices, voxels pooled; MPP needs labeled slices, so no MPP row)",
            "",
            markdown_table(rows_test),
            "",
            f"Pictures: overlay_test_stage1.png and overlay_test_scm.png (slice {z} of the held-out stack; true"
            " positives green, false negatives red, false positives blue), dice_along_z_test.png.",
            "",
            "Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f"; total {total:.0f} s.",
        ]
    )
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(report + "\n"))
    return report
