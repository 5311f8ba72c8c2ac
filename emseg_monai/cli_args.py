"""The ``emseg`` command line: its commands and options (``cli`` runs them)."""

from __future__ import annotations

import argparse

from emseg_monai import __version__


def _features(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"features must be 6 comma-separated integers, got {text!r}") from None
    if len(values) != 6 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"features must be 6 comma-separated positive integers, got {text!r}")
    return values


def _config_defaults() -> dict[str, dict]:
    """The shipped configs' top-level values by file stem ({} for a config that cannot be read)."""
    from pathlib import Path

    import yaml

    from emseg_monai import default_bundle_root

    found = {}
    for name in ("train", "scm_train", "mpp", "inference", "suggest"):
        try:
            found[name] = yaml.safe_load((Path(default_bundle_root()) / "configs" / f"{name}.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            found[name] = {}
    return found


def _with_default(text: str, defaults: dict[str, dict]) -> str:
    """``text`` with ``{config:key}`` replaced by that config's default (for --help)."""
    import re

    def value(match: re.Match) -> str:
        config, key = match.group(1), match.group(2)
        found = defaults.get(config, {}).get(key)
        shown = ",".join(map(str, found)) if isinstance(found, list) else found
        shown = str(shown).lower() if isinstance(found, bool) else shown  # as YAML writes it
        return f"default {shown}, {config}.yaml: {key}" if found is not None else f"{config}.yaml: {key}"

    return re.sub(r"\{(\w+):(\w+)\}", value, text)


def _options(parser: argparse.ArgumentParser, specs: list[tuple], defaults: dict | None = None) -> None:
    """Add (flag, help[, type or "flag"]) options with default None (or False for flags).

    A ``{config:key}`` in a help text shows that config's default: the config decides it, not argparse.
    """
    for flag, text, *kind in specs:
        text = _with_default(text, defaults or {})
        if kind and kind[0] == "flag":
            parser.add_argument(flag, action="store_true", help=text)
        else:
            parser.add_argument(flag, default=None, type=kind[0] if kind else str, help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emseg", description="Mitochondria segmentation of EM stacks (MONAI bundle).")
    parser.add_argument("--version", action="version", version=f"emseg-monai {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors in the log")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = _config_defaults()
    device = ("--device", "cpu, cuda, cuda:1 ... (default: cuda if available)")

    demo = sub.add_parser("demo", help="train and evaluate on synthetic stacks (a few minutes on a CPU)")
    demo.add_argument("--output", default="demo_output", help="folder for data, weights and results")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data, the training and the transforms")
    _options(demo, [device, ("--overwrite", "reuse an existing output folder", "flag")])

    train = sub.add_parser("train", help="train stage 1, MPP and the SCM on one stack; the run is a bundle folder")
    train.add_argument("image", help="image stack (.tif, .tiff, .nii, .nii.gz), (Z, Y, X)")
    train.add_argument("label", help="label stack of the same shape, 0/255 or 0/1")
    train.add_argument("--labeled", required=True, help='labeled slices: "every:5", "0:160:5", "0,5,10"')
    train.add_argument("--output", required=True, help="the run's folder (a bundle: configs/, models/, docs/)")
    train.add_argument("--val-slices", default="rest", help='validation slices: "rest" (unlabeled), "none", a spec')
    train.add_argument("--seed", type=int, default=0, help="seeds python, numpy, torch and the transforms")
    train.add_argument("--scm-input", choices=("prob", "mask"), default=None, help="SCM inputs: probabilities or masks")
    _options(
        train,
        [
            ("--epochs", "stage-1 epochs ({train:epochs})", int),
            ("--scm-epochs", "SCM epochs (default: as stage 1)", int),
            ("--iterations", "iterations per epoch, both stages ({train:iterations_per_epoch})", int),
            ("--batch-size", "crops per iteration ({train:batch_size})", int),
            ("--crop-size", "side of the square training crops ({train:crop_size})", int),
            ("--downsample", "XY resolution factor of both stages ({train:downsample})", float),
            ("--features", "BasicUNet widths ({train:features})", _features),
            (
                "--intensity-prob",
                "stage 1: probability of each random change of contrast, gain, offset, noise and blur "
                "({train:intensity_prob})",
                float,
            ),
            ("--window", "SCM window N, odd ({scm_train:scm_window}; from the voxel size when known)", int),
            ("--voxel-size", "Z,Y,X in nm, e.g. 45,5,5 (default: the file's; else Z/XY estimated from the image)"),
            ("--use-scm", "auto (default: the SCM unless MPP's check finds MPP worse than stage 1), true or false"),
            ("--min-size", "MPP smallest object, px per slice ({mpp:min_size})", int),
            ("--spread-min-size", "MPP smallest spread piece, px ({mpp:spread_min_size})", int),
            ("--erosions-per-step", "MPP erosions per slice step ({mpp:erosions_per_step})", int),
            (
                "--precision",
                "auto (default: bf16 where the CPU or GPU has bfloat16 in hardware, else float32), float32 or bf16",
            ),
            device,
            ("--tracking", "'mlflow' (needs mlflow installed) or a MONAI tracking-settings file"),
            ("--tensorboard", "also write TensorBoard logs to this folder (needs tensorboard)"),
            ("--overwrite", "reuse an existing output folder", "flag"),
            (
                "--resume",
                "continue an interrupted run in --output (same options as before); on a finished run with "
                "changed --labeled, fine-tune its weights (a third of its epochs unless --epochs)",
                "flag",
            ),
        ],
        defaults,
    )

    seg = sub.add_parser("segment", help="segment a stack with a bundle: stage 1 then SCM; uint8 0/255 masks")
    seg.add_argument("image", help="image stack (.tif, .tiff, .nii, .nii.gz, .zarr)")
    seg.add_argument("output", help="output mask stack (.tif, .tiff, .nii, .nii.gz, .zarr)")
    _options(
        seg,
        [
            ("--models", "bundle folder: a training run or bundle/ (default: the shipped bundle)"),
            ("--no-scm", "stage 1 only", "flag"),
            ("--scm", "run the SCM even where the training run decided on stage 1 alone (use_scm: false)", "flag"),
            ("--flips", "average 4 flips of the final stage: the SCM, or stage 1 when it runs alone (slower)", "flag"),
            (
                "--stage1-flips",
                "true or false: average stage 1's 4 flips also where the SCM reads them ({inference:stage1_flips}; "
                "runs on sections >= 2x as thick as their pixels write true)",
            ),
            (
                "--smoothing",
                "sigma of the 3D Gaussian on the SCM's probabilities, in slices and network pixels "
                "({inference:smoothing}; 0: none)",
                float,
            ),
            (
                "--smoothing-z",
                "that Gaussian's sigma along Z alone, in slices, --smoothing then acting in Y and X (0 for sections "
                "that do not line up in Y and X; unset or none: --smoothing's, or 0 where a bundle trained on thick "
                "sections finds the stack's sections shifted; {inference:smoothing_z})",
            ),
            ("--batch-size", "slices per forward pass ({inference:batch_size})", int),
            ("--backend", "auto (ONNX Runtime on the CPU, the default), torch, onnx, channels_last, bf16"),
            ("--save-stage1", "also write the stage-1 probabilities and masks", "flag"),
            (
                "--voxel-size",
                "the stack's voxel size Z,Y,X in nm (default: as recorded in the file); against the weights' "
                "({inference:trained_voxel_size}): other pixel sizes are resized, sections >= 2x thicker skip the SCM "
                "(unrecorded: Z/XY estimated from the image)",
            ),
            ("--no-voxel-match", "keep the trained downsample and the SCM whatever the stack's voxel size", "flag"),
            device,
            ("--overwrite", "replace an existing output file", "flag"),
            ("--block-size", "process this many slices at a time (default for .zarr: 32)", int),
            ("--resume", "finish an interrupted block-wise run into a .zarr output", "flag"),
            ("--workers", "run the blocks on a local Dask cluster of N workers", int),
            ("--scheduler", "run the blocks on the Dask scheduler at tcp://host:port"),
        ],
        defaults,
    )

    ev = sub.add_parser("evaluate", help="Dice and IoU of a mask stack against ground truth")
    ev.add_argument("pred", help="predicted mask stack (.tif, .tiff, .nii, .nii.gz, .zarr), 0/255 or 0/1")
    ev.add_argument("truth", help="ground-truth mask stack of the same shape")
    ev.add_argument("--slices", default="all", help='slices scored, e.g. "all" or "1:165"')
    _options(
        ev,
        [
            ("--csv", "write per-slice scores of the scored slices to this CSV file"),
            ("--json", "write the summary to this JSON file"),
            ("--overlay", "write a PNG of one slice: TP green, FN red, FP blue"),
            ("--image", "the image stack, the overlay's grey background"),
            ("--overlay-slice", "slice of the overlay (default: middle)", int),
            ("--dice-plot", "write a PNG of Dice per scored slice along Z"),
            ("--overwrite", "replace existing output files", "flag"),
        ],
    )

    me = sub.add_parser("measure", help="one CSV row per mitochondrion (3D connected component) of a mask")
    me.add_argument("mask", help="mask stack (.tif, .tiff, .nii, .nii.gz, .zarr), 0/255 or 0/1")
    me.add_argument("--connectivity", type=int, default=26, choices=(6, 18, 26), help="3D neighbours (default 26)")
    me.add_argument("--min-voxels", type=int, default=1, help="leave out objects smaller than this")
    _options(
        me,
        [
            ("--csv", "output CSV (default: <mask name>_objects.csv beside the mask)"),
            ("--voxel-size", "Z,Y,X in nm, e.g. 5,5,5 (default: from the file's metadata)"),
            ("--overwrite", "replace an existing CSV", "flag"),
        ],
    )

    cu = sub.add_parser("curves", help="plot training loss and validation Dice per epoch of a training run")
    cu.add_argument("run", help="the --output folder of emseg train (reads *_history.csv)")
    _options(
        cu, [("--output", "PNG to write (default: RUN/training_curves.png)"), ("--overwrite", "replace it", "flag")]
    )
    su = sub.add_parser("suggest", help="which slices of a training run's stack to label next, with reasons")
    su.add_argument("run", help="the --output folder of emseg train")
    _options(
        su,
        [
            ("--count", "slices to suggest ({suggest:count})", int),
            ("--csv", "CSV of every slice's signals (default: RUN/suggestions.csv)"),
            ("--plot", "PNG of the signals along Z (default: RUN/suggestions.png)"),
            ("--overwrite", "replace existing suggestion files", "flag"),
        ],
        defaults,
    )
    ex = sub.add_parser(
        "export-bioimageio",
        help="write a bioimage.io model package (zip) for Fiji, ilastik, napari (needs [bioimageio])",
    )
    ex.add_argument("output", help="the package to write, a .zip file")
    _options(
        ex,
        [
            ("--models", "bundle folder: a training run or bundle/ (default: the shipped bundle)"),
            ("--sample", "stack whose middle becomes the package's test input (default: a synthetic EM stack)"),
            ("--no-check", "skip bioimage.io's own test of the written package", "flag"),
            ("--overwrite", "replace an existing package", "flag"),
        ],
    )
    return parser
