"""Run the bundle configs from Python: each stage of the pipeline is one config (or config + overlay).

``emseg`` and the demo call these; they only translate arguments into config overrides.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

from emseg_monai import default_bundle_root
from emseg_monai.errors import InputError
from emseg_monai.handlers.checkpoint import training_done
from emseg_monai.io.stacks import atomic_write

logger = logging.getLogger(__name__)

SETTINGS_FILE = "emseg.json"
# Settings that must agree between training and inference; recorded beside the weights.
SHARED_KEYS = ("stage1_features", "scm_features", "scm_window", "scm_input", "stage1_downsample", "scm_downsample")


def config_path(name: str, bundle_root: str | Path | None = None) -> str:
    """Path of ``configs/<name>`` in the bundle folder."""
    root = Path(bundle_root or default_bundle_root())
    path = root / "configs" / name
    if not path.is_file():
        raise InputError(f"bundle config not found: {path} (is the bundle folder {root} complete?)")
    return str(path)


def check_tracking(tracking: str | None) -> str | None:
    """``tracking`` if usable: ``"mlflow"`` with mlflow installed, or a tracking-settings file; else InputError."""
    if tracking is None:
        return None
    if tracking == "mlflow":
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:
            raise InputError("--tracking mlflow needs the mlflow package: pip install mlflow-skinny (or mlflow)")
        return tracking
    if not Path(tracking).is_file():
        raise InputError(f"--tracking must be 'mlflow' or a tracking-settings file, got {tracking!r}")
    return tracking


def run_config(
    names: list[str], bundle_root: str | Path | None = None, tracking: str | None = None, **overrides: Any
) -> Any:
    """Run bundle config(s) ``names`` (merged left to right) with ``overrides``; return the run's result.

    ``tracking`` (``"mlflow"`` or a settings file) adds MONAI's experiment-tracking handlers.
    """
    files = [config_path(n, bundle_root) for n in names]
    meta = config_path("metadata.json", bundle_root)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    logger.info("running %s with %s", " + ".join(names), overrides)
    start = time.perf_counter()
    workflow = ConfigWorkflow(
        config_file=files, meta_file=meta, logging_file=False, workflow_type=None, tracking=tracking, **overrides
    )
    workflow.initialize()
    try:
        result = workflow.run()
    finally:
        workflow.finalize()
    logger.info("%s finished in %.1f s", " + ".join(names), time.perf_counter() - start)
    return result


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
    bundle_root: str | Path | None = None,
    resume: bool = False,
    tracking: str | None = None,
) -> dict[str, float]:
    """Train both stages on one stack: stage 1, stage-1 inference, MPP, SCM.

    Writes, in ``output_dir``: ``models/stage1.pt``, ``stage1_prob.tif``, ``stage1_mask.tif``,
    ``mpp_mask.tif``, ``models/scm.pt`` and ``models/emseg.json`` (the settings inference needs).

    Parameters
    ----------
    stage1, scm : dict or None
        Overrides of train.yaml for stage 1 and of train.yaml + scm_train.yaml for the SCM
        (``epochs``, ``batch_size``, ``crop_size``, ...).
    mpp : dict or None
        Overrides of mpp.yaml (``min_size``, ``erosions_per_step``, ...).
    shared : dict or None
        Settings both training and inference need (keys of ``SHARED_KEYS``).
    resume : bool
        Continue an interrupted run in ``output_dir``: steps whose outputs are complete are
        skipped, an interrupted training continues from its last epoch (``models/*_state.pt``),
        and every step after the first one rerun is rerun.
    tracking : str or None
        ``"mlflow"`` (or a MONAI tracking-settings file) records both trainings' parameters,
        losses and validation metrics with MLflow (in ``output_dir/mlruns`` by default).

    Returns
    -------
    dict
        Wall time in seconds of each step.
    """
    out = Path(output_dir)
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    shared = {k: v for k, v in (shared or {}).items() if v is not None}
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
        run_config(names, bundle_root, **{"tracking": None, **overrides})
        times[step] = time.perf_counter() - start

    def training(step: str, names: list[str], ckpt_name: str, **overrides: Any) -> None:
        stem = ckpt_name.rsplit(".", 1)[0]
        weights, state = models / ckpt_name, models / f"{stem}_state.pt"
        done = training_done(weights, state)
        again = bool(resume and not rerun and not done and state.is_file())
        timed(step, names, done, **overrides, resume=again, tracking=check_tracking(tracking))

    training("stage 1 training", ["train.yaml"], "stage1.pt", **common, **_pick(shared, "stage1"), **(stage1 or {}))
    stage1_files = all((out / f).is_file() for f in ("stage1_prob.tif", "stage1_mask.tif"))
    timed("stage 1 inference", ["inference.yaml", "stage1_infer.yaml"], stage1_files, **common, **shared)
    mpp_keys = ("label_file", "labeled_slices", "output_dir")
    timed("MPP", ["mpp.yaml"], (out / "mpp_mask.tif").is_file(), **{k: common[k] for k in mpp_keys}, **(mpp or {}))
    scm_configs = ["train.yaml", "scm_train.yaml"]
    training("SCM training", scm_configs, "scm.pt", **common, **_pick(shared, "scm"), **(scm or {}))
    settings = {k: shared[k] for k in SHARED_KEYS if k in shared}
    atomic_write(models / SETTINGS_FILE, lambda tmp: tmp.write_text(json.dumps(settings, indent=2)))
    return times


def _pick(shared: dict[str, Any], stage: str) -> dict[str, Any]:
    """train.yaml overrides (``features``, ``downsample``, ``scm_window`` ...) for one stage."""
    picked = {}
    if f"{stage}_features" in shared:
        picked["features"] = shared[f"{stage}_features"]
    if f"{stage}_downsample" in shared:
        picked["downsample"] = shared[f"{stage}_downsample"]
    if stage == "scm":
        picked.update({k: shared[k] for k in ("scm_window", "scm_input") if k in shared})
    return picked


def load_settings(ckpt_dir: str | Path) -> dict[str, Any]:
    """The inference settings recorded beside the weights (``emseg.json``), or {} when absent."""
    path = Path(ckpt_dir) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"cannot parse {path}: {exc}") from None
    return {k: v for k, v in settings.items() if k in SHARED_KEYS}


def segment_file(
    image_file: str | Path,
    output_file: str | Path,
    ckpt_dir: str | Path | None = None,
    bundle_root: str | Path | None = None,
    **overrides: Any,
) -> Any:
    """Run inference.yaml on one stack with the weights (and recorded settings) in ``ckpt_dir``."""
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else Path(bundle_root or default_bundle_root()) / "models"
    for name in ("stage1.pt",) + (("scm.pt",) if overrides.get("use_scm", True) else ()):
        if not (ckpt_dir / name).is_file():
            raise InputError(f"weights not found: {ckpt_dir / name} (train with `emseg train` or pass --models)")
    settings = load_settings(ckpt_dir)
    return run_config(
        ["inference.yaml"],
        bundle_root,
        image_file=str(image_file),
        output_file=str(output_file),
        ckpt_dir=str(ckpt_dir),
        **{**settings, **overrides},
    )
