"""``emseg``: shortcuts into the bundle configs; each command turns its options into config overrides.

    emseg demo [--output DIR]
    emseg train IMAGE LABEL --labeled every:5 --output RUN         # train.yaml, mpp.yaml, scm_train.yaml
    emseg segment IMAGE OUTPUT [--models RUN]                     # RUN/configs/inference.yaml
    emseg evaluate PRED GT [--slices SPEC] [--csv FILE]           # evaluate.yaml
    emseg measure MASK [--voxel-size Z,Y,X] [--csv FILE]
    emseg curves RUN [--output PNG]
    emseg suggest RUN [--count 4]                                 # RUN/configs/suggest.yaml
    emseg export-bioimageio OUT.zip [--models RUN] [--sample STACK]  # bioimage.io model package

Errors in the input and faults of the machine end the command with one line on stderr
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from emseg_monai.cli_args import build_parser
from emseg_monai.errors import ONE_LINE_ERRORS, InputError, TrainingInterrupted, find_cause

logger = logging.getLogger("emseg")


def cmd_demo(args: argparse.Namespace) -> int:
    from emseg_monai.demo import run_demo
    from emseg_monai.training.pipeline import check_new_folder

    print(run_demo(check_new_folder(args.output, args.overwrite), seed=args.seed, device=args.device))
    return 0


# emseg train options -> config keys: of both trainings, shared with inference, of MPP
STAGE = dict(epochs="epochs", iterations="iterations_per_epoch", batch_size="batch_size", crop_size="crop_size")
STAGE.update(val_slices="val_slices", seed="seed", tensorboard="tensorboard_dir", precision="precision")
SHARED = dict(features="features", downsample="downsample", window="scm_window", scm_input="scm_input")
MPP = ("min_size", "spread_min_size", "erosions_per_step")
CHECKED = "image label labeled output overwrite resume window downsample tracking precision tensorboard device".split()
CHECKED += ["voxel_size", "use_scm", "intensity_prob"]
# emseg segment options -> inference.yaml keys (a flag left off keeps the config's default)
SEGMENT = dict(
    flips="flips",
    stage1_flips="stage1_flips",
    batch_size="batch_size",
    backend="backend",
    save_stage1="save_stage1",
    device="device",
)
SEGMENT.update(block_size="block_size", resume="resume", workers="dask_workers", scheduler="dask_scheduler")
SEGMENT.update(voxel_size="voxel_size", smoothing="smoothing", smoothing_z="smoothing_z")


def cmd_train(args: argparse.Namespace) -> int:
    from emseg_monai.io.volumes import open_volume
    from emseg_monai.training.finetune import finetune_epochs, prepare_finetune
    from emseg_monai.training.pipeline import check_train_inputs, train_pipeline

    folder = check_train_inputs(**{key: getattr(args, key) for key in CHECKED})
    previous = prepare_finetune(folder, args.labeled, open_volume(args.image).shape[0]) if args.resume else None
    if previous is not None:  # new labels on a finished run: start from its weights, fewer epochs
        epochs, scm_epochs = finetune_epochs(folder)
        given = args.epochs  # --epochs also sets the SCM's, as in a new run
        args.epochs, args.scm_epochs = given or epochs, args.scm_epochs or given or scm_epochs
        logger.info("fine-tuning for %d stage-1 and %d SCM epochs (--epochs to change)", args.epochs, args.scm_epochs)
    common = {key: getattr(args, name) for name, key in STAGE.items()}
    shared = {key: getattr(args, name) for name, key in SHARED.items()}
    start = time.perf_counter()
    result = train_pipeline(
        args.image,
        args.label,
        args.labeled,
        folder,
        stage1={**common, "intensity_prob": args.intensity_prob},
        scm={**common, "epochs": args.scm_epochs or args.epochs},
        mpp={key: getattr(args, key) for key in MPP},
        shared=shared,
        device=args.device,
        resume=args.resume,
        tracking=args.tracking,
        bundle=folder if previous is not None else None,  # the run's own recipe
        init_from=previous,
        voxel_size=args.voxel_size,
        use_scm=args.use_scm or "auto",
    )
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items())
    done = "fine-tuned the earlier weights" if previous is not None else "trained"
    if steps:
        print(f"{done} in {time.perf_counter() - start:.0f} s ({steps}); the bundle is {folder}")
    else:
        print(f"nothing to do: the run in {folder} is complete (its bundle is up to date)")
    scores = result["metrics"]
    if scores:
        print(
            f"validation on {scores['val_slices']} slices: Dice stage 1 {100 * scores['stage1_val_mean_dice']:.2f}%, "
            f"MPP targets {100 * scores['mpp_val_mean_dice']:.2f}%, final {100 * scores['val_mean_dice']:.2f}%"
            + (
                f", finished stack {100 * scores['finished_val_mean_dice']:.2f}%"
                if "finished_val_mean_dice" in scores
                else ""
            )
        )
    if result.get("mpp_check"):
        print(f"MPP check: {result['mpp_check']}")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from emseg_monai.workflows import segment_file

    if args.block_size is not None and args.block_size < 1:  # 0 is "whole volume" in the config, not here
        raise InputError(f"--block-size must be at least 1 slice, got {args.block_size}")
    overrides = {key: None if getattr(args, name) is False else getattr(args, name) for name, key in SEGMENT.items()}
    if args.no_scm and args.scm:
        raise InputError("--no-scm and --scm contradict each other: give one")
    overrides.update(use_scm=False if args.no_scm else (True if args.scm else None), overwrite=args.overwrite)
    if args.no_voxel_match:
        overrides["match_voxel_size"] = False
    for stats in segment_file(args.image, args.output, args.models, **overrides):
        shape = stats["shape"]
        print(
            f"wrote {stats['output']}: {' x '.join(map(str, shape))} = {stats['voxels'] / 1e6:.1f} Mvoxel "
            f"in {stats['seconds']:.1f} s ({stats['mvoxel_per_s']:.2f} Mvoxel/s)"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from emseg_monai.workflows import evaluate_file

    summary = evaluate_file(
        args.pred,
        args.truth,
        slices=args.slices,
        csv_file=args.csv or False,
        json_file=args.json or False,
        overwrite=args.overwrite,
        image_file=args.image,
        overlay_file=args.overlay,
        overlay_slice=args.overlay_slice,
        dice_plot_file=args.dice_plot,
    )
    print(f"Dice {100 * summary['dice']:.2f}%  IoU {100 * summary['iou']:.2f}%  ({summary['slices']} slices)")
    for path in summary["written"]:
        print(f"wrote {path}")
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from emseg_monai.evaluation.measure import measure_file

    print(measure_file(args.mask, args.csv, args.voxel_size, args.connectivity, args.min_voxels, args.overwrite))
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from emseg_monai.evaluation.figures import save_run_curves

    print(f"wrote {save_run_curves(args.run, args.output, args.overwrite)}")
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from emseg_monai import default_bundle_root
    from emseg_monai.workflows import resolve_bundle, run_config

    run = resolve_bundle(args.run)
    # runs trained before suggest.yaml existed take the shipped config
    configs = run if (run / "configs" / "suggest.yaml").is_file() else Path(default_bundle_root())
    overrides = dict(count=args.count, csv_file=args.csv, plot_file=args.plot, overwrite=args.overwrite)
    run_config(["suggest.yaml"], configs, run_dir=str(run), **overrides)
    return 0


def cmd_export_bioimageio(args: argparse.Namespace) -> int:
    from emseg_monai.exchange.bioimageio import check_package, export_bioimageio

    package = export_bioimageio(args.output, args.models, args.sample, args.overwrite)
    if args.no_check:
        print(f"wrote {package}")
        return 0
    summary = check_package(package)
    print(f"wrote {package}; bioimage.io test: {summary.status}")
    if summary.status != "passed":
        print(summary.format(), file=sys.stderr)
        print(f"emseg export-bioimageio: {package} failed bioimage.io's test (details above); kept for a look")
        return 1
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "segment": cmd_segment,
    "evaluate": cmd_evaluate,
    "measure": cmd_measure,
    "curves": cmd_curves,
    "suggest": cmd_suggest,
    "export-bioimageio": cmd_export_bioimageio,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    import monai.bundle.workflows  # noqa: F401  (MONAI sets its loggers' levels on import: quiet them after)

    quiet = ("monai.bundle", "monai.bundle.workflows", "ignite.engine.engine.SupervisedEvaluator", "distributed")
    for noisy in quiet:
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.ERROR)
    trainer = logging.getLogger("ignite.engine.engine.SupervisedTrainer")  # epochs: TrainingHistory logs them
    trainer.setLevel(logging.DEBUG if args.debug else logging.WARNING)
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM unwinds like Ctrl-C: no partial files
    try:
        return COMMANDS[args.command](args)
    except Exception as exc:
        stopped = find_cause(exc, TrainingInterrupted)
        if stopped is not None and not args.debug:
            message = str(stopped)
            if args.command == "demo":  # the demo has no --resume: it starts again
                message = f"stopped by {signal.Signals(stopped.signum).name}; run emseg demo again with --overwrite"
            print(f"emseg {args.command}: {message}", file=sys.stderr)
            return 128 + stopped.signum
        cause = find_cause(exc, ONE_LINE_ERRORS)
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


if __name__ == "__main__":
    sys.exit(main())
