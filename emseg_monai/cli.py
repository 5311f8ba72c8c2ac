"""``emseg``: the common jobs as one command, each a thin layer over the bundle configs.

    emseg demo [--output DIR]
    emseg train IMAGE LABEL --labeled every:5 --output DIR
    emseg segment IMAGE OUTPUT [--models DIR]
    emseg evaluate PRED GT [--slices SPEC] [--csv FILE]
    emseg measure MASK [--voxel-size Z,Y,X] [--csv FILE]
    emseg curves RUN [--output PNG]

Errors in the input end the command with one line on stderr (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path

import numpy as np

from emseg_monai import __version__
from emseg_monai.errors import InputError, TrainingInterrupted

logger = logging.getLogger("emseg")


def _features(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"features must be 6 comma-separated integers, got {text!r}") from None
    if len(values) != 6 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"features must be 6 comma-separated positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emseg", description="Mitochondria segmentation of EM stacks (MONAI bundle).")
    parser.add_argument("--version", action="version", version=f"emseg-monai {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors in the log")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train and evaluate on synthetic stacks (a few minutes on a CPU)")
    demo.add_argument("--output", default="demo_output", help="folder for data, weights and results")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data, the training and the transforms")
    demo.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    demo.add_argument("--overwrite", action="store_true", help="reuse an existing output folder")

    train = sub.add_parser("train", help="train stage 1, MPP and the SCM on one stack")
    train.add_argument("image", help="image stack (.tif, .tiff, .nii, .nii.gz), (Z, Y, X)")
    train.add_argument("label", help="label stack of the same shape, 0/255 or 0/1")
    train.add_argument("--labeled", required=True, help='labeled slices: "every:5", "0:160:5", "0,5,10"')
    train.add_argument("--output", required=True, help="folder for weights, stage files and logs")
    train.add_argument("--val-slices", default="rest", help='validation slices: "rest" (unlabeled), "none", a spec')
    train.add_argument("--epochs", type=int, default=None, help="stage-1 epochs (train.yaml: epochs)")
    train.add_argument("--scm-epochs", type=int, default=None, help="SCM epochs")
    train.add_argument("--iterations", type=int, default=None, help="iterations per epoch, both stages")
    train.add_argument("--batch-size", type=int, default=None, help="crops per iteration (train.yaml: 8)")
    train.add_argument("--crop-size", type=int, default=None, help="side of the square training crops (128)")
    train.add_argument("--downsample", type=float, default=None, help="resolution factor of both stages")
    train.add_argument("--features", type=_features, default=None, help="BasicUNet widths, e.g. 16,16,32,64,128,16")
    train.add_argument("--window", type=int, default=None, help="SCM window N (odd)")
    train.add_argument(
        "--scm-input", choices=("prob", "mask"), default=None, help="SCM inputs: stage-1 probabilities or masks"
    )
    train.add_argument("--min-size", type=int, default=None, help="MPP smallest object (px per slice)")
    train.add_argument("--spread-min-size", type=int, default=None, help="MPP smallest spread piece (px)")
    train.add_argument("--erosions-per-step", type=int, default=None, help="MPP erosions per slice step")
    train.add_argument("--seed", type=int, default=0, help="seeds python, numpy, torch and the transforms")
    train.add_argument(
        "--precision",
        default=None,
        help="float32 (default) or bf16: training forward passes in bfloat16 on the CPU (about 2x faster steps)",
    )
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    train.add_argument("--overwrite", action="store_true", help="reuse an existing output folder")
    train.add_argument(
        "--tracking", default=None, help="'mlflow' (needs mlflow installed) or a MONAI tracking-settings file"
    )
    train.add_argument(
        "--tensorboard", default=None, help="also write TensorBoard logs to this folder (needs tensorboard)"
    )
    train.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --output (same options as before)"
    )

    seg = sub.add_parser("segment", help="segment a stack: stage 1 then SCM; writes uint8 0/255 masks")
    seg.add_argument("image", help="image stack (.tif, .tiff, .nii, .nii.gz)")
    seg.add_argument("output", help="output mask stack (.tif, .tiff, .nii, .nii.gz)")
    seg.add_argument("--models", default=None, help="folder with stage1.pt, scm.pt (default: bundle/models)")
    seg.add_argument("--no-scm", action="store_true", help="stage 1 only")
    seg.add_argument("--flips", action="store_true", help="average 4 flips (slower, slightly better)")
    seg.add_argument("--batch-size", type=int, default=None, help="slices per forward pass (inference.yaml: 4)")
    seg.add_argument(
        "--backend",
        default=None,
        help="inference backend: auto (ONNX Runtime on the CPU when installed, else torch; the default), "
        "torch, onnx, channels_last, bf16",
    )
    seg.add_argument("--save-stage1", action="store_true", help="also write the stage-1 probabilities and masks")
    seg.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    seg.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    seg.add_argument(
        "--block-size", type=int, default=None, help="process this many slices at a time (default for .zarr: 32)"
    )
    seg.add_argument("--resume", action="store_true", help="finish an interrupted block-wise run into a .zarr output")
    seg.add_argument("--workers", type=int, default=None, help="run the blocks on a local Dask cluster of N workers")
    seg.add_argument("--scheduler", default=None, help="run the blocks on the Dask scheduler at tcp://host:port")

    ev = sub.add_parser("evaluate", help="Dice and IoU of a mask stack against ground truth")
    ev.add_argument("pred", help="predicted mask stack, 0/255 or 0/1")
    ev.add_argument("truth", help="ground-truth mask stack of the same shape")
    ev.add_argument("--slices", default="all", help='slices scored, e.g. "all" or "1:165"')
    ev.add_argument("--csv", default=None, help="write per-slice scores to this CSV file")
    ev.add_argument("--json", default=None, help="write the summary to this JSON file")
    ev.add_argument("--overlay", default=None, help="write a PNG of one slice: TP green, FN red, FP blue")
    ev.add_argument("--image", default=None, help="the image stack, the overlay's grey background")
    ev.add_argument("--overlay-slice", type=int, default=None, help="slice of the overlay (default: middle)")
    ev.add_argument("--dice-plot", default=None, help="write a PNG of Dice per slice along Z")
    ev.add_argument("--overwrite", action="store_true", help="replace existing output files")

    me = sub.add_parser("measure", help="one CSV row per mitochondrion (3D connected component) of a mask")
    me.add_argument("mask", help="mask stack (.tif, .tiff, .nii, .nii.gz), 0/255 or 0/1")
    me.add_argument("--csv", default=None, help="output CSV (default: <mask name>_objects.csv beside the mask)")
    me.add_argument("--voxel-size", default=None, help="Z,Y,X in nm, e.g. 5,5,5 (default: from the file's metadata)")
    me.add_argument("--connectivity", type=int, default=26, choices=(6, 18, 26), help="3D neighbours (default 26)")
    me.add_argument("--min-voxels", type=int, default=1, help="leave out objects smaller than this")
    me.add_argument("--overwrite", action="store_true", help="replace an existing CSV")

    cu = sub.add_parser("curves", help="plot training loss and validation Dice per epoch of a training run")
    cu.add_argument("run", help="the --output folder of emseg train (reads *_history.csv)")
    cu.add_argument("--output", default=None, help="PNG to write (default: RUN/training_curves.png)")
    cu.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    return parser


def _check_new_folder(path: str, overwrite: bool) -> Path:
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output is a file, not a folder: {folder}")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise InputError(f"output folder is not empty: {folder} (pass --overwrite to reuse it)")
    if not folder.parent.is_dir():
        raise InputError(f"parent of the output folder does not exist: {folder.parent}")
    return folder


def cmd_demo(args: argparse.Namespace) -> int:
    from emseg_monai.demo import run_demo

    folder = _check_new_folder(args.output, args.overwrite)
    print(run_demo(folder, seed=args.seed, device=args.device))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from emseg_monai.data.training import require_labeled
    from emseg_monai.io.stacks import read_mask, read_stack
    from emseg_monai.transforms.windows import check_window
    from emseg_monai.workflows import check_tracking, train_pipeline

    if args.resume:
        folder = Path(args.output)
        if not (folder / "models").is_dir():
            raise InputError(f"nothing to resume: {folder} holds no earlier run (no models folder)")
    else:
        folder = _check_new_folder(args.output, args.overwrite)
    image = read_stack(args.image)  # fail early, before any training, on bad inputs
    read_mask(args.label, shape=image.shape)
    require_labeled(args.labeled, image.shape[0])
    if args.window is not None:
        check_window(args.window)
    check_tracking(args.tracking)
    if args.precision is not None:
        import torch

        from emseg_monai.networks import with_precision

        with_precision(torch.nn.Identity(), args.precision, args.device or "cpu")
    if args.tensorboard is not None:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise InputError("--tensorboard needs the tensorboard package: pip install tensorboard")
    common = {
        "epochs": args.epochs,
        "iterations_per_epoch": args.iterations,
        "batch_size": args.batch_size,
        "crop_size": args.crop_size,
        "val_slices": args.val_slices,
        "seed": args.seed,
        "tensorboard_dir": args.tensorboard,
        "precision": args.precision,
    }
    shared = {
        "stage1_features": args.features,
        "scm_features": args.features,
        "scm_window": args.window,
        "scm_input": args.scm_input,
        "stage1_downsample": args.downsample,
        "scm_downsample": args.downsample,
    }
    mpp = {
        "min_size": args.min_size,
        "spread_min_size": args.spread_min_size,
        "erosions_per_step": args.erosions_per_step,
    }
    start = time.perf_counter()
    times = train_pipeline(
        args.image,
        args.label,
        args.labeled,
        folder,
        stage1=common,
        scm={**common, "epochs": args.scm_epochs},
        mpp=mpp,
        shared=shared,
        device=args.device,
        resume=args.resume,
        tracking=args.tracking,
    )
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
    print(f"trained in {time.perf_counter() - start:.0f} s ({steps}); weights in {folder / 'models'}")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from emseg_monai.inference.backends import check_backend
    from emseg_monai.inference.pipeline import wants_blocks
    from emseg_monai.io.stacks import check_output_path
    from emseg_monai.io.volumes import open_volume
    from emseg_monai.workflows import segment_file

    if args.block_size is not None and args.block_size < 1:
        raise InputError(f"--block-size must be at least 1 slice, got {args.block_size}")
    shape = tuple(open_volume(args.image).shape)  # checks the input early, reads no pixels
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    if args.backend is not None:
        check_backend(args.backend)
    blockwise = wants_blocks(args.image, args.output, args.block_size, args.resume, args.workers, args.scheduler)
    if not blockwise:
        check_output_path(args.output, overwrite=args.overwrite)
    start = time.perf_counter()
    segment_file(
        args.image,
        args.output,
        ckpt_dir=args.models,
        use_scm=not args.no_scm,
        flips=args.flips,
        batch_size=args.batch_size,
        backend=args.backend,
        save_stage1=args.save_stage1,
        device=args.device,
        overwrite=args.overwrite,
        block_size=args.block_size,
        resume=args.resume,
        dask_workers=args.workers,
        dask_scheduler=args.scheduler,
    )
    seconds = time.perf_counter() - start
    voxels = shape[0] * shape[1] * shape[2]
    print(
        f"wrote {args.output}: {shape[0]} x {shape[1]} x {shape[2]} = {voxels / 1e6:.1f} Mvoxel "
        f"in {seconds:.1f} s ({voxels / 1e6 / max(seconds, 1e-9):.2f} Mvoxel/s)"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from emseg_monai.evaluation.report import evaluate_masks
    from emseg_monai.io.stacks import check_output_path, read_mask

    for extra in (args.csv, args.json, args.overlay, args.dice_plot):
        if extra:
            check_output_path(extra, overwrite=args.overwrite)
    if args.overlay and not args.image:
        raise InputError("--overlay needs --image, the image stack to draw on")
    pred = read_mask(args.pred)
    truth = read_mask(args.truth, shape=pred.shape)
    summary = evaluate_masks(
        pred, truth, args.slices, args.csv, args.json, overwrite=args.overwrite, names=(args.pred, args.truth)
    )
    print(f"Dice {100 * summary['dice']:.2f}%  IoU {100 * summary['iou']:.2f}%  ({summary['slices']} slices)")
    if args.overlay or args.dice_plot:
        _figures(args, pred, truth)
    if args.debug:
        print(json.dumps(summary, indent=2))
    return 0


def _user_error(exc: BaseException) -> BaseException | None:
    """The input error behind ``exc`` (bundle configs wrap errors raised while they are parsed), or None."""
    return _find(exc, (InputError, FileNotFoundError, PermissionError, IsADirectoryError))


def _figures(args: argparse.Namespace, pred, truth) -> None:
    from emseg_monai.evaluation.figures import save_dice_along_z, save_overlay
    from emseg_monai.io.stacks import read_stack

    if args.dice_plot:
        print(f"wrote {save_dice_along_z(args.dice_plot, {'prediction': pred}, truth, overwrite=args.overwrite)}")
    if args.overlay:
        image = read_stack(args.image)
        if image.shape != pred.shape:
            raise InputError(f"image {args.image} has shape {image.shape}, the masks {pred.shape}")
        z = pred.shape[0] // 2 if args.overlay_slice is None else args.overlay_slice
        if not 0 <= z < pred.shape[0]:
            raise InputError(f"--overlay-slice {z} is outside the stack of {pred.shape[0]} slices")
        print(f"wrote {save_overlay(args.overlay, image[z], pred[z], truth[z], overwrite=args.overwrite)}")


def cmd_measure(args: argparse.Namespace) -> int:
    from emseg_monai.evaluation.measure import measure_objects, parse_voxel_size, voxel_size_nm, write_measurements
    from emseg_monai.io.stacks import check_output_path, read_mask

    mask_path = Path(args.mask)
    name = mask_path.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else mask_path.stem
    csv_file = Path(args.csv) if args.csv else mask_path.with_name(f"{stem}_objects.csv")
    check_output_path(csv_file, overwrite=args.overwrite)
    voxel = parse_voxel_size(args.voxel_size) if args.voxel_size else None
    mask = read_mask(args.mask)
    if voxel is None:
        voxel = voxel_size_nm(args.mask)
        if voxel is None:
            logger.warning("%s records no voxel size with a unit: volume_um3 left empty (pass --voxel-size)", name)
    start = time.perf_counter()
    rows = measure_objects(mask, voxel, args.connectivity, args.min_voxels)
    write_measurements(csv_file, rows, overwrite=args.overwrite)
    border = sum(row["touches_border"] for row in rows)
    sizes = np.array([row["voxels"] for row in rows]) if rows else np.zeros(0)
    size = f"voxel {voxel[0]:g} x {voxel[1]:g} x {voxel[2]:g} nm" if voxel else "voxel size unknown"
    median = f", median {np.median(sizes):.0f} voxels" if rows else ""
    total = f", {sum(row['volume_um3'] for row in rows):.3f} um^3 in all" if voxel and rows else ""
    print(
        f"{len(rows)} objects ({border} touching the border){median}{total} ({size}); "
        f"wrote {csv_file} in {time.perf_counter() - start:.1f} s"
    )
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from emseg_monai.evaluation.figures import save_training_curves
    from emseg_monai.io.stacks import check_output_path

    run = Path(args.run)
    if not run.is_dir():
        raise InputError(f"training run folder does not exist: {run}")
    histories = {
        name: run / f"{stem}_history.csv"
        for name, stem in (("stage 1", "stage1"), ("SCM", "scm"))
        if (run / f"{stem}_history.csv").is_file()
    }
    if not histories:
        raise InputError(f"no stage1_history.csv or scm_history.csv in {run} (written by emseg train)")
    output = Path(args.output) if args.output else run / "training_curves.png"
    check_output_path(output, overwrite=args.overwrite)
    print(f"wrote {save_training_curves(output, histories, overwrite=args.overwrite)}")
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "segment": cmd_segment,
    "evaluate": cmd_evaluate,
    "measure": cmd_measure,
    "curves": cmd_curves,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("monai.bundle", "monai.bundle.workflows"):  # config-parsing chatter
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.ERROR)
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM unwinds like Ctrl-C: no partial files
    try:
        return COMMANDS[args.command](args)
    except Exception as exc:
        stopped = _find(exc, TrainingInterrupted)
        if stopped is not None and not args.debug:
            print(f"emseg {args.command}: {stopped}", file=sys.stderr)
            return 128 + stopped.signum
        cause = _user_error(exc)
        if cause is None or args.debug:
            raise
        print(f"emseg {args.command}: error: {cause}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        print(f"emseg {args.command}: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame) -> None:
    raise KeyboardInterrupt(signum)


def _find(exc: BaseException | None, kind: type) -> BaseException | None:
    """``exc`` or the first exception of type ``kind`` in its cause/context chain, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
