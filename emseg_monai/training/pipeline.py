"""``emseg train``: stage 1, stage-1 inference, MPP and the SCM on one stack, then a bundle folder.

Each step is a bundle config run with overrides (``workflows.run_config``). The run folder ends up
a complete MONAI bundle (``training.bundle``): its configs' defaults are the settings used here,
its metadata holds the validation scores measured at the end.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from emseg_monai import default_bundle_root
from emseg_monai.data.slices import parse_slice_spec
from emseg_monai.data.training import select_val_slices
from emseg_monai.errors import InputError
from emseg_monai.evaluation.metrics import dice_iou
from emseg_monai.handlers.checkpoint import training_done
from emseg_monai.inference.voxel_match import SCM_MAX_Z_RATIO
from emseg_monai.io.stacks import read_mask
from emseg_monai.io.volumes import open_volume
from emseg_monai.io.voxels import VoxelSize, downsample_for, parse_voxel_size, resolve_voxel_size, scm_window_for
from emseg_monai.options import as_bool
from emseg_monai.training.bundle import config_defaults, first_section_keys, write_run_bundle
from emseg_monai.training.finetune import FINETUNE_MARKER
from emseg_monai.training.targets import finish_stack
from emseg_monai.transforms.mpp import z_steps
from emseg_monai.workflows import check_tracking, config_path, run_config, segment_file

logger = logging.getLogger(__name__)

FINAL_MASK = "final_mask.tif"
FINISHED_MASK = "finished_mask.tif"
MPP_REPORT = "mpp_check.json"
# finishing a run that falls back to stage 1: the labeled slices' ground truth in, nothing else changed
KEEP_LABELS_ONLY = {"min_size": 0, "spread": False, "vote_distances": (), "bracket_vote": False}
REFERENCE_MPP_PIXEL_NM = 5.0  # mpp.yaml's min_size and spread_min_size are set for 5 nm pixels (EPFL)
THICK_SECTION_SMOOTHING = 1.0  # the SCM's smoothing for stacks of thick sections (see _smoothing_default)


def check_new_folder(path: str | Path, overwrite: bool) -> Path:
    """``path`` as the folder of a new run: created with its parents; refused if a file or not empty."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output is a file, not a folder: {folder}")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise InputError(f"output folder is not empty: {folder} (pass --overwrite to reuse it)")
    return folder


def check_train_inputs(
    image: str | Path,
    label: str | Path,
    labeled: str,
    output: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    window: int | None = None,
    downsample: float | None = None,
    tracking: str | None = None,
    precision: str | None = None,
    tensorboard: str | None = None,
    device: str | None = None,
    bundle: str | Path | None = None,
    voxel_size: str | None = None,
    use_scm: str | None = None,
    intensity_prob: float | None = None,
) -> Path:
    """Check everything ``train_pipeline`` will need before any training starts; returns the run folder.

    Reads both stacks (shape, values), the labeled-slice spec, the slice size at the training
    resolution, the window, the intensity-change probability, tracking, precision, TensorBoard and
    device; refuses a non-empty output folder unless ``overwrite`` or ``resume``.
    """
    import importlib.util

    from emseg_monai.data.training import require_labeled, training_size
    from emseg_monai.inference.settings import check_device
    from emseg_monai.io.stacks import read_stack
    from emseg_monai.options import as_float
    from emseg_monai.transforms.windows import check_window

    if resume:
        folder = Path(output)
        if not (folder / "models").is_dir():
            raise InputError(f"nothing to resume: {folder} holds no earlier run (no models folder)")
    else:
        folder = check_new_folder(output, overwrite)
    if device is not None:
        check_device(device)
    if voxel_size is not None:
        parse_voxel_size(voxel_size)
    if use_scm is not None and str(use_scm).lower() not in ("auto", "true", "false"):
        raise InputError(f"--use-scm must be auto, true or false, got {use_scm!r}")
    if intensity_prob is not None:
        as_float(intensity_prob, "--intensity-prob", minimum=0.0, maximum=1.0)
    stack = read_stack(image)
    labels = read_mask(label, shape=stack.shape)
    chosen = require_labeled(labeled, stack.shape[0])
    empty = [int(z) for z in chosen if not labels[z].any()]
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        logger.warning(
            "%d of the %d labeled slices have no mitochondrion in %s (slices %s): they teach 'nothing here'; "
            "check --labeled if that is not so",
            len(empty),
            chosen.size,
            label,
            shown,
        )
    if window is not None:
        check_window(window)
    check_tracking(tracking)
    if precision is not None:
        from emseg_monai.networks.precision import resolve_precision

        resolve_precision(precision, device or "cpu")
    if tensorboard is not None and importlib.util.find_spec("tensorboard") is None:
        raise InputError("--tensorboard needs the tensorboard package: pip install tensorboard")
    if downsample is None:
        downsample = config_defaults(config_path("train.yaml", bundle or default_bundle_root()))["downsample"]
    training_size(stack.shape, as_float(downsample, "downsample", minimum=1.0))
    return folder


def train_pipeline(
    image_file: str | Path,
    label_file: str | Path,
    labeled_slices: str,
    output_dir: str | Path,
    stage1: dict[str, Any] | None = None,
    scm: dict[str, Any] | None = None,
    mpp: dict[str, Any] | None = None,
    shared: dict[str, Any] | None = None,
    device: str | None = None,
    bundle: str | Path | None = None,
    resume: bool = False,
    tracking: str | None = None,
    command: str | None = None,
    init_from: str | Path | None = None,
    voxel_size: str | tuple | None = None,
    use_scm: str | bool = "auto",
) -> dict[str, Any]:
    """Train both stages on one stack and leave ``output_dir`` a complete bundle folder.

    Writes, in ``output_dir``: ``models/model.pt`` (stage 1), ``stage1_prob.tif``,
    ``stage1_mask.tif``, ``mpp_mask.tif`` and ``mpp_check.json`` (MPP's check against stage 1 on
    hidden labeled slices, and the decision whether the SCM is used), ``models/scm.pt``,
    ``final_mask.tif`` (the training stack segmented by the new bundle), ``finished_mask.tif``
    (the final masks with the labeled slices' ground truth in and spread to their neighbours), and
    ``configs/``, ``docs/README.md``, ``LICENSE``.

    The voxel size (``voxel_size`` "Z,Y,X" nm, else the image file's) sets MPP's Z steps and,
    unless given in ``shared``, the SCM window and the training resolution (``io.voxels``).

    Parameters
    ----------
    stage1, scm : dict or None
        Overrides of train.yaml for stage 1 and of train.yaml + scm_train.yaml for the SCM
        (``epochs``, ``batch_size``, ``crop_size``, ...).
    mpp : dict or None
        Overrides of mpp.yaml (``min_size``, ``erosions_per_step``, ...).
    shared : dict or None
        Settings that inference must share: ``features`` and ``downsample`` (both stages),
        ``scm_window``, ``scm_input``; the rest of the defaults come from the configs.
    bundle : path or None
        The bundle whose configs train (default: the shipped one).
    resume : bool
        Continue an interrupted run in ``output_dir``: steps whose outputs are complete are
        skipped, an interrupted training continues from its last epoch (``models/*_state.pt``),
        and every step after the first one rerun is rerun.
    tracking : str or None
        ``"mlflow"`` (or a MONAI tracking-settings file) records both trainings' parameters,
        losses and validation metrics with MLflow (in ``output_dir/mlruns`` by default).
    command : str or None
        The command line recorded in the run's README (default: this process's).
    init_from : path or None
        A folder with ``model.pt`` and ``scm.pt`` that both trainings start from (fine-tuning, see
        ``prepare_finetune``); removed, with ``models/finetune.json``, once the run is complete.
    voxel_size : str or tuple or None
        (z, y, x) in nm; None: read from ``image_file`` (isotropic assumed, with a warning, if absent).
    use_scm : "auto", bool
        Whether the run's bundle segments with the SCM: ``"auto"`` follows MPP's check, true or
        false overrule it (the SCM is trained either way).

    Returns
    -------
    dict
        ``seconds`` (wall time of each step) and ``metrics`` (validation scores, maybe empty).
    """
    source = Path(bundle or default_bundle_root())
    out = Path(output_dir)
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    shared = {k: v for k, v in (shared or {}).items() if v is not None}
    mpp_config = config_defaults(config_path("mpp.yaml", source))
    if voxel_size is None:  # a fine-tuned run keeps the voxel size it was given
        voxel_size = mpp_config.get("voxel_size")
    voxels = resolve_voxel_size(image_file, voxel_size)
    own_recipe = bundle is not None and init_from is not None
    shared.update(_voxel_defaults(voxels, shared, own_recipe))
    given_mpp = {k: v for k, v in (mpp or {}).items() if v is not None}
    mpp = {**_mpp_sizes(voxels, mpp_config, given_mpp, own_recipe), **given_mpp, "anisotropy": voxels.anisotropy}
    erosions = mpp.get("erosions_per_step", mpp_config["erosions_per_step"])
    logger.info("%s: MPP Z steps %s", voxels.describe(), z_steps(voxels.anisotropy, erosions))
    if voxels.nm is not None:
        mpp["voxel_size"] = ",".join(f"{v:g}" for v in voxels.nm)
    common = {
        "image_file": str(image_file),
        "label_file": str(label_file),
        "labeled_slices": labeled_slices,
        "output_dir": str(out),
        "ckpt_dir": str(models),
        "device": device,
    }
    times: dict[str, float] = {}
    rerun = not resume  # once one step runs again, the steps after it must too

    def timed(step: str, names: list[str], done: bool, **overrides: Any) -> None:
        nonlocal rerun
        if done and not rerun:
            logger.info("resume: %s already done", step)
            return
        rerun = True
        start = time.perf_counter()
        run_config(names, source, **{"tracking": None, **overrides})
        times[step] = time.perf_counter() - start

    def training(step: str, names: list[str], ckpt_name: str, run_name: str, **overrides: Any) -> None:
        weights, state = models / ckpt_name, models / f"{run_name}_state.pt"
        done = training_done(weights, state)
        again = bool(resume and not rerun and not done and state.is_file())
        timed(step, names, done, **overrides, resume=again, tracking=check_tracking(tracking))

    both = {k: shared[k] for k in ("features", "downsample") if k in shared}
    stage1_overrides = {**both, **(stage1 or {})}
    scm_overrides = {**both, **{k: shared[k] for k in ("scm_window", "scm_input") if k in shared}, **(scm or {})}
    if init_from is not None:
        stage1_overrides["init_weights"] = str(Path(init_from) / "model.pt")
        scm_overrides["init_weights"] = str(Path(init_from) / "scm.pt")
    training("stage 1 training", ["train.yaml"], "model.pt", "stage1", **common, **stage1_overrides)
    stage1_files = all((out / f).is_file() for f in ("stage1_prob.tif", "stage1_mask.tif"))
    trained_voxels = list(voxels.nm) if voxels.nm is not None else None
    inference = {**_inference_defaults(source, stage1_overrides, scm_overrides), "trained_voxel_size": trained_voxels}
    # size unknown: the ratio MPP and the window assumed, so that later stacks are judged against it
    inference["trained_z_ratio"] = None if trained_voxels is not None else round(voxels.anisotropy, 2)
    smoothing = _smoothing_default(voxels, own_recipe, image_file, inference["scm_downsample"])
    inference.update({k: v for k, v in smoothing.items() if k != "section_shift_px"})
    own_stack = {"match_voxel_size": False}  # the training stack has the trained voxel size by definition
    stage1_infer = ["inference.yaml", "stage1_infer.yaml"]
    one_pass = {"flips": False, "stage1_flips": False}  # MPP and the SCM learn from one-pass stage-1 outputs
    timed("stage 1 inference", stage1_infer, stage1_files, **common, **inference, **own_stack, **one_pass)
    mpp_keys = ("label_file", "labeled_slices", "output_dir")
    mpp_done = all((out / f).is_file() for f in ("mpp_mask.tif", MPP_REPORT))
    timed("MPP", ["mpp.yaml"], mpp_done, **{k: common[k] for k in mpp_keys}, **mpp)
    check = json.loads((out / MPP_REPORT).read_text())
    if str(use_scm).lower() != "auto":
        check["use_scm"] = as_bool(use_scm, "use_scm")
        check["reason"] += f"; overruled: use_scm {str(check['use_scm']).lower()} was given"
    logger.info("MPP check: %s", check["reason"])
    training("SCM training", ["train.yaml", "scm_train.yaml"], "scm.pt", "scm", **common, **scm_overrides)

    defaults = {
        "inference.yaml": {**inference, **_flips_default(voxels, own_recipe), "use_scm": bool(check["use_scm"])},
        "train.yaml": _hyper(source, "train.yaml", {"labeled_slices": labeled_slices, **stage1_overrides}),
        "scm_train.yaml": _scm_defaults(source, stage1_overrides, scm_overrides),
        "mpp.yaml": _hyper(source, "mpp.yaml", {"labeled_slices": labeled_slices, **mpp}),
    }
    write_run_bundle(out, source, defaults, {}, {})  # a runnable bundle now: the final step runs it
    if rerun or not (out / FINAL_MASK).is_file():
        start = time.perf_counter()
        segment_file(image_file, out / FINAL_MASK, out, device=device, overwrite=True, **own_stack)
        times["segment the training stack"] = time.perf_counter() - start
        rerun = True
    if rerun or not (out / FINISHED_MASK).is_file():
        start = time.perf_counter()
        finishing = check["settings"] if check["use_scm"] else KEEP_LABELS_ONLY  # MPP unproven: labels only
        finish_stack(out / FINAL_MASK, label_file, labeled_slices, out / FINISHED_MASK, finishing)
        times["finish the training stack"] = time.perf_counter() - start
    metrics = validation_scores(out, label_file, labeled_slices, (stage1 or {}).get("val_slices", "rest"))
    record = {
        "image": str(image_file),
        "label": str(label_file),
        "labeled_slices": labeled_slices,
        "shape": [int(n) for n in open_volume(out / FINAL_MASK).shape],  # its header, not its pixels
        "seconds": times,
        "command": command or " ".join(shlex.quote(a) for a in ["emseg", *sys.argv[1:]]),
        "seed": (stage1 or {}).get("seed", config_defaults(config_path("train.yaml", source)).get("seed")),
        "device": device or "default",
        "precision": _training_precision(source, stage1_overrides, scm_overrides, device),
        "voxels": voxels.as_record(),
        "mpp_check": {
            k: check[k] for k in ("checked", "held_out", "dice", "choice", "use_scm", "reason") if k in check
        },
    }
    if "section_shift_px" in smoothing:  # measured on thick sections: what chose the smoothing along Z
        record["section_shift_px"] = smoothing["section_shift_px"]
    write_run_bundle(out, source, defaults, metrics, record)
    if init_from is not None:
        shutil.rmtree(init_from, ignore_errors=True)
        (models / FINETUNE_MARKER).unlink(missing_ok=True)
    return {"seconds": times, "metrics": metrics, "mpp_check": check["reason"]}


def _training_precision(source: Path, stage1: dict[str, Any], scm: dict[str, Any], device: str | None) -> str:
    """The precision stage 1 trained in: ``float32`` or ``bf16`` (``auto`` resolved for the device used)."""
    from emseg_monai.networks.devices import default_device
    from emseg_monai.networks.precision import resolve_precision

    first, _ = _stage_settings(source, stage1, scm)
    used = device or default_device()  # train.yaml's default device
    return resolve_precision(str(first["precision"]), used)


def validation_scores(run: Path, label_file: str | Path, labeled_slices: str, val_slices: str = "rest") -> dict:
    """Dice and IoU (voxels pooled) of stage 1, MPP and the final masks on the validation slices.

    All validation slices count (not the at most 32 that training reports on). Empty when there are
    none, or when the label stack has no foreground on them.
    """
    final = read_mask(run / FINAL_MASK)
    truth = read_mask(label_file, shape=final.shape)
    labeled = parse_slice_spec(labeled_slices, final.shape[0])
    val = select_val_slices(val_slices, labeled, truth, final.shape[0], 0)
    if val.size == 0:
        return {}
    scores: dict[str, Any] = {"val_slices": int(val.size)}
    names = [("stage1_", "stage1_mask.tif"), ("mpp_", "mpp_mask.tif"), ("", FINAL_MASK)]
    names += [("finished_", FINISHED_MASK)] if (run / FINISHED_MASK).is_file() else []
    for prefix, name in names:
        dice, iou = dice_iou(read_mask(run / name, shape=final.shape), truth, val)
        scores[f"{prefix}val_mean_dice"] = round(float(dice), 4)
        scores[f"{prefix}val_mean_iou"] = round(float(iou), 4)
    logger.info(
        "validation on %d slices: stage 1 Dice %.2f%%, final %.2f%%",
        val.size,
        100 * scores["stage1_val_mean_dice"],
        100 * scores["val_mean_dice"],
    )
    if "finished_val_mean_dice" in scores:
        logger.info(
            "the finished training stack (%s): Dice %.2f%%", FINISHED_MASK, 100 * scores["finished_val_mean_dice"]
        )
    if scores["val_mean_dice"] < scores["stage1_val_mean_dice"]:
        logger.warning(
            "the SCM lowered the validation Dice from %.2f%% (stage 1) to %.2f%%: check the run, or segment "
            "with stage 1 only (emseg segment --no-scm; bundle: --use_scm false)",
            100 * scores["stage1_val_mean_dice"],
            100 * scores["val_mean_dice"],
        )
    return scores


def _voxel_defaults(voxels: VoxelSize, shared: dict[str, Any], own_recipe: bool) -> dict[str, Any]:
    """SCM window (from a known or image-estimated Z/XY) and training resolution (from a known XY
    size), where not given (nor fine-tuning)."""
    if own_recipe or voxels.source == "unknown":
        return {}
    chosen = {}
    if "scm_window" not in shared:
        chosen["scm_window"] = scm_window_for(voxels.anisotropy)
    if "downsample" not in shared and voxels.xy_nm is not None:
        chosen["downsample"] = downsample_for(voxels.xy_nm)
    if chosen:
        origin = "the image's Z/XY estimate" if voxels.nm is None else "the voxel size"
        logger.info("from %s: %s", origin, ", ".join(f"{k} {v:g}" for k, v in chosen.items()))
    return chosen


def _thick_section_run(voxels: VoxelSize, own_recipe: bool) -> bool:
    """Whether a run gets the thick-section inference defaults (``_smoothing_default``, ``_flips_default``):
    Z/XY >= ``SCM_MAX_Z_RATIO`` from a known or estimated voxel size, and not a fine-tuning run (which
    keeps its source's settings)."""
    return not own_recipe and voxels.source != "unknown" and voxels.anisotropy >= SCM_MAX_Z_RATIO


def _smoothing_default(
    voxels: VoxelSize, own_recipe: bool, image_file: str | Path, scm_downsample: float
) -> dict[str, Any]:
    """The SCM output's smoothing for a stack of thick sections (Z/XY >= ``SCM_MAX_Z_RATIO``), else {}.

    The default sigma (1.5 slices) was chosen on 5 nm sections. On EPFL kept at every 8th / 4th slice
    (40 / 20 nm sections, the run's SCM forced on) smoothing 0, 1 and 1.5 scored 91.69 / 92.71,
    **92.09 / 93.41** and 90.86 / 93.32 (stage 1: 91.59 / 92.34; a second 20 nm seed: 93.01, **93.40**,
    93.23; docs/results.md), so such runs write 1. On sections that do not line up, smoothing along Z
    erodes the masks: the rough 40 nm proxy (residual shifts of std 6 px) scored 84.52 with sigma 1
    in all axes against 91.42 with none along Z (stage 1 91.35; docs/results.md, "A rough
    serial-section stack"). So where the upper quartile of the shifts between neighbouring sections
    (``io.alignment.upper_shift_quartile``) exceeds ``MISALIGNED_PX`` pixels at the SCM's resolution, the
    run writes ``smoothing_z: 0``. The measured quartile (image pixels) is returned as
    ``section_shift_px`` for the run's record. A fine-tuned run keeps its source's settings; an
    unknown voxel size keeps the default.
    """
    if not _thick_section_run(voxels, own_recipe):
        return {}
    from emseg_monai.io.alignment import shift_limit, upper_shift_quartile

    quartile, limit = upper_shift_quartile(open_volume(image_file)), shift_limit(scm_downsample)
    found = {"smoothing": THICK_SECTION_SMOOTHING, "section_shift_px": round(quartile, 1)}
    if quartile > limit:
        found["smoothing_z"] = 0.0
    logger.info(
        "Z/XY ratio %.2g, a quarter of the neighbouring sections shifted by %.1f px or more (limit %g): the SCM's "
        "output is smoothed by %g%s",
        voxels.anisotropy,
        quartile,
        limit,
        THICK_SECTION_SMOOTHING,
        " in Y and X only (sections that do not line up)" if "smoothing_z" in found else "",
    )
    return found


def _flips_default(voxels: VoxelSize, own_recipe: bool) -> dict[str, Any]:
    """``stage1_flips: true`` for the bundle of a run on thick sections (Z/XY >= ``SCM_MAX_Z_RATIO``), else {}.

    On 40 nm proxies of serial sections (EPFL kept at every 8th slice; the same imaged through the
    section's thickness; a misaligned one) the run's SCM reading stage 1's 4 flips averaged scored
    +0.3 to +0.8 Dice above the same SCM on one pass (on a 20 nm proxy +0.2), and stage 1 alone
    with its flips +0.2 to +0.8 above stage 1 (docs/results.md, "Flips of stage 1 on thick
    sections"); on EPFL's 5 nm sections the SCM lost on unseen slices with them, so isotropic runs
    keep one pass. Only the bundle's segmentation changes: MPP and the SCM train on one-pass
    stage-1 outputs (SCMs trained on flip-averaged ones, as inputs and targets or as targets alone,
    scored no better on two 40 nm proxies: docs/results.md). A fine-tuned run keeps its source's
    settings; an unknown voxel size keeps the default.
    """
    if not _thick_section_run(voxels, own_recipe):
        return {}
    logger.info("Z/XY ratio %.2g: the run's bundle averages stage 1's 4 flips (stage1_flips true)", voxels.anisotropy)
    return {"stage1_flips": True}


def _mpp_sizes(voxels: VoxelSize, defaults: dict[str, Any], given: dict[str, Any], own_recipe: bool) -> dict[str, Any]:
    """MPP's object sizes (px, ``defaults`` set for 5 nm pixels) for this stack's pixel size, where not given."""
    if voxels.nm is None or own_recipe:
        return {}
    area = (REFERENCE_MPP_PIXEL_NM / voxels.xy_nm) ** 2
    sizes = {k: int(round(defaults[k] * area)) for k in ("min_size", "spread_min_size") if given.get(k) is None}
    if area != 1.0 and sizes:
        logger.info("MPP sizes for %g nm pixels: %s", voxels.nm[2], ", ".join(f"{k} {v} px" for k, v in sizes.items()))
    return sizes


def _hyper(source: Path, name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The ``values`` that are hyper-parameters of config ``name`` (keys of its first section)."""
    keys = first_section_keys(config_path(name, source)) - {"tensorboard_dir", "resume", "init_weights"}
    return {k: v for k, v in values.items() if k in keys and v is not None}


def _stage_settings(source: Path, stage1: dict[str, Any], scm: dict[str, Any]) -> tuple[dict, dict]:
    """The settings each training ran with: the source configs' defaults under this run's overrides."""
    train = config_defaults(config_path("train.yaml", source))
    first = {**train, **{k: v for k, v in stage1.items() if v is not None}}
    second = {**train, **config_defaults(config_path("scm_train.yaml", source))}
    second.update({k: v for k, v in scm.items() if v is not None})
    return first, second


def _inference_defaults(source: Path, stage1: dict[str, Any], scm: dict[str, Any]) -> dict[str, Any]:
    """inference.yaml's settings shared with training, as this run trains them (overrides, else configs)."""
    first, second = _stage_settings(source, stage1, scm)
    return {
        "stage1_features": first["features"],
        "scm_features": second["features"],
        "scm_window": second["scm_window"],
        "scm_input": second["scm_input"],
        "stage1_downsample": first["downsample"],
        "scm_downsample": second["downsample"],
    }


def _scm_defaults(source: Path, stage1: dict[str, Any], scm: dict[str, Any]) -> dict[str, Any]:
    """scm_train.yaml defaults: its own keys as trained, plus the train.yaml keys where the SCM differed."""
    own = first_section_keys(config_path("scm_train.yaml", source))
    base = first_section_keys(config_path("train.yaml", source))
    first, second = _stage_settings(source, stage1, scm)
    values = {k: v for k, v in scm.items() if v is not None and k in own}
    skip = {"tensorboard_dir", "resume", "init_weights"}
    values.update({k: second[k] for k in base - own - skip if k in second and second[k] != first.get(k)})
    return values
