"""The SCM trained again with out-of-fold stage-1 probabilities on the labeled slices (a screen; not a test).

Stage 1 trains on the labeled slices, so its probabilities there nearly equal their labels: where
the SCM trains on a labeled slice (its target the ground truth), its input shows almost no error to
correct, unlike any slice it segments later. Here ``--folds`` K models of stage 1, each trained
on the labeled slices outside one fold (``--fold-epochs``; the run's recipe otherwise), predict the
slices of that fold; those out-of-fold probabilities replace stage 1's on the labeled slices of
a copy of the run's ``stage1_prob.tif``, and the SCM is trained again on the copy (same stage-1
weights, MPP targets, seed and recipe; ``train_pipeline(..., resume=True)``). The final masks of
the training stack are then scored on ``--score``; ``--test-image`` / ``--test-truth`` /
``--test-score`` also segment and score another stack (the EPFL Z-split: the whole volume,
slices 110..164). Example, on a run of ``benchmarks/generalisation.py``::

    python benchmarks/oof_scm.py runs/gen8_s21/epfl8 --image runs/gen8_s21/data_epfl8/image.tif \\
        --label runs/gen8_s21/data_epfl8/label.tif --labeled every:4 --score rest-of:every:4 --output runs/oof8

``RUN`` needs ``models/model.pt``, ``stage1_prob.tif``, ``stage1_mask.tif``, ``mpp_mask.tif`` and
``mpp_check.json``; its ``configs/train.yaml`` (else the shipped one) trains the folds. Steps
already done in ``--output`` are skipped, so an interrupted screen continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from ensemble import scored_slices  # benchmarks/ensemble.py: this script's folder is on sys.path

from emseg_monai import default_bundle_root
from emseg_monai.data.slices import parse_slice_spec
from emseg_monai.evaluation import dice_iou
from emseg_monai.handlers.checkpoint import training_done
from emseg_monai.inference.stages import stage1
from emseg_monai.io import read_mask, read_stack, write_stack
from emseg_monai.training.pipeline import train_pipeline
from emseg_monai.transforms.stacks import intensity_range
from emseg_monai.workflows import load_bundle_networks, run_config, segment_file

COPIED = ("stage1_prob.tif", "stage1_mask.tif", "mpp_mask.tif", "mpp_check.json")
IN_FOLD = "stage1_prob_in_fold.tif"  # the run's own stage-1 probabilities, kept for comparison


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished training run (or one with stage 1 and MPP done)")
    parser.add_argument("--image", required=True, help="the run's training image stack")
    parser.add_argument("--label", required=True, help="the run's label stack")
    parser.add_argument("--labeled", required=True, help="the run's labeled slices (a slice spec)")
    parser.add_argument("--score", help="slices of the training stack to score the final masks on (rest-of:SPEC)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--fold-epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (the SCM's too)")
    parser.add_argument("--precision", help="the run's training precision (default: the configs')")
    parser.add_argument("--test-image")
    parser.add_argument("--test-truth")
    parser.add_argument("--test-score", help="slices of --test-image to score, e.g. 110:165")
    return parser.parse_args()


def copy_run(source: Path, run: Path) -> None:
    """The stage-1 weights and the files MPP and the SCM read, copied once into ``run``."""
    (run / "models").mkdir(parents=True, exist_ok=True)
    for name in ("models/model.pt", *COPIED):
        if not (run / name).is_file():
            shutil.copy2(source / name, run / name)
    if not (run / IN_FOLD).is_file():
        shutil.copy2(run / "stage1_prob.tif", run / IN_FOLD)


def train_folds(args: argparse.Namespace, out: Path, labeled: np.ndarray) -> list[tuple[Path, np.ndarray]]:
    """Train the fold models; returns (fold folder, the labeled slices it predicts) per fold."""
    configs = Path(args.run) / "configs"
    bundle = Path(args.run) if (configs / "train.yaml").is_file() else default_bundle_root()
    folds = []
    for k in range(args.folds):
        held, kept = labeled[k :: args.folds], np.setdiff1d(labeled, labeled[k :: args.folds])
        folder = out / f"fold{k}"
        if not training_done(folder / "models" / "model.pt", folder / "models" / "stage1_state.pt"):
            start = time.perf_counter()
            run_config(
                ["train.yaml"],
                bundle,
                image_file=args.image,
                label_file=args.label,
                labeled_slices=",".join(str(z) for z in kept),
                val_slices="none",
                output_dir=str(folder),
                ckpt_dir=str(folder / "models"),
                epochs=args.fold_epochs,
                seed=args.seed,
                precision=args.precision,
            )
            print(f"fold {k}: trained on {kept.tolist()} in {time.perf_counter() - start:.0f} s", flush=True)
        folds.append((folder, held))
    return folds


def splice(args: argparse.Namespace, run: Path, folds: list[tuple[Path, np.ndarray]]) -> None:
    """Write the out-of-fold probabilities into ``run/stage1_prob.tif`` (once: ``oof.json`` marks it done)."""
    marker = run / "oof.json"
    if marker.is_file():
        return
    image = read_stack(args.image)
    source = Path(args.run)
    network, _, settings, _ = load_bundle_networks(source if (source / "configs").is_dir() else None, use_scm=False)
    settings = settings.replace(flips=False, stage1_flips=False)  # one pass, as the SCM's training inputs are
    in_fold = read_stack(run / IN_FOLD)
    prob = in_fold.copy()
    agreement = {}
    for folder, held in folds:
        network.load_state_dict(torch.load(folder / "models" / "model.pt", map_location="cpu"))
        out_of_fold = stage1(network, image, settings, intensity_range(image), progress=False, scm_follows=True)
        prob[held] = out_of_fold[held]
        for z in held:
            agreement[int(z)] = float(dice_iou(in_fold[z] >= 128, out_of_fold[z] >= 128)[0])
    write_stack(run / "stage1_prob.tif", prob)
    for name in ("models/scm.pt", "models/scm_state.pt", "final_mask.tif", "finished_mask.tif"):
        (run / name).unlink(missing_ok=True)  # the SCM and what follows it are trained and written again
    marker.write_text(json.dumps({"in-fold vs out-of-fold stage-1 mask Dice": agreement}, indent=1))
    print("in-fold vs out-of-fold stage-1 masks, Dice per labeled slice:", flush=True)
    print({z: round(100 * d, 2) for z, d in agreement.items()}, flush=True)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.output)
    run = out / "run"
    copy_run(Path(args.run), run)
    truth = read_mask(args.label)
    n = truth.shape[0]
    labeled = parse_slice_spec(args.labeled, n)
    folds = train_folds(args, out, labeled)
    splice(args, run, folds)
    both = {"val_slices": "none", "seed": args.seed}
    if args.precision:
        both["precision"] = args.precision
    start = time.perf_counter()
    train_pipeline(args.image, args.label, args.labeled, run, stage1=both, scm=dict(both), resume=True)
    print(f"SCM and final masks: {time.perf_counter() - start:.0f} s", flush=True)
    if args.score:
        scored = scored_slices(args.score, n)
        for name in ("stage1_mask.tif", "mpp_mask.tif", "final_mask.tif", "finished_mask.tif"):
            dice, iou = dice_iou(read_mask(run / name), truth, scored)
            print(f"{name}: Dice {100 * dice:.2f} IoU {100 * iou:.2f} on {len(scored)} slices")
    if args.test_image:
        test_truth = read_mask(args.test_truth)
        scored = scored_slices(args.test_score, test_truth.shape[0])
        segment_file(args.test_image, out / "test_final.tif", run, overwrite=True)
        dice, iou = dice_iou(read_mask(out / "test_final.tif"), test_truth, scored)
        print(f"test stack, final: Dice {100 * dice:.2f} IoU {100 * iou:.2f} on {len(scored)} slices")


if __name__ == "__main__":
    main()
