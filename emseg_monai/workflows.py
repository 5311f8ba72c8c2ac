"""Run bundle configs from Python: each job of the pipeline is one config (or config + overlay).

``emseg``, the demo and the training pipeline call these; they only turn arguments into config
overrides. ``bundle`` arguments are bundle folders (``configs/`` + ``models/``): the shipped
``bundle/`` or a training run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monai.bundle import ConfigWorkflow

from emseg_monai import default_bundle_root
from emseg_monai.errors import InputError

if TYPE_CHECKING:  # annotations only: importing torch here would slow every command's start
    import torch

    from emseg_monai.inference.settings import InferenceSettings

logger = logging.getLogger(__name__)

LATE_KEYS = ("smoothing", "smoothing_z", "stage1_flips")  # inference settings that older run folders may lack
# the settings#smoothing_z of inference.yaml of 0.8.11, for run folders written before 0.8.9 (0.8.12's
# also passes @trained_z_ratio, a key those folders lack)
# (folders older than 0.8.6 have no `smoothing` key: the guard's last argument is left out there)
OLD_FOLDER_Z_GUARD = (
    "$emseg_monai.inference.voxel_match.z_smoothing_for(None, @image_file, @trained_voxel_size, @match_voxel_size,"
    " @settings#scm_downsample, @use_scm, @smoothing)"
)


def resolve_bundle(path: str | Path | None = None) -> Path:
    """The bundle folder ``path`` names (itself, or the parent of its ``models/``); default: the shipped one.

    Raises InputError when it is not a bundle folder (no ``configs/inference.yaml``).
    """
    if path is None:
        path = default_bundle_root()
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"bundle folder does not exist: {folder}")
    for candidate in (folder, folder.parent):
        if (candidate / "configs" / "inference.yaml").is_file():
            return candidate
    legacy = (
        " (weights of an emseg before 0.2, without configs: train again)" if (folder / "stage1.pt").is_file() else ""
    )
    raise InputError(f"not a bundle folder: {folder} has no configs/inference.yaml{legacy}")


def config_path(name: str, bundle: str | Path | None = None) -> str:
    """Path of ``configs/<name>`` in the bundle folder."""
    root = Path(bundle or default_bundle_root())
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
    names: list[str], bundle: str | Path | None = None, tracking: str | None = None, **overrides: Any
) -> Any:
    """Run config(s) ``names`` of a bundle (merged left to right) with ``overrides``; the run's last result.

    ``tracking`` (``"mlflow"`` or a settings file) adds MONAI's experiment-tracking handlers.
    Overrides that are None are left out (the config's default applies).
    """
    root = Path(bundle or default_bundle_root())
    files = [config_path(n, root) for n in names]
    overrides = {"bundle_root": str(root), **{k: v for k, v in overrides.items() if v is not None}}
    logger.debug("running %s with %s", " + ".join(names), overrides)
    start = time.perf_counter()
    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=config_path("metadata.json", root),
        logging_file=False,
        workflow_type=None,
        tracking=tracking,
        **overrides,
    )
    workflow.initialize()
    try:
        result = workflow.run()
    finally:
        workflow.finalize()
    logger.debug("%s finished in %.1f s", " + ".join(names), time.perf_counter() - start)
    return result[-1] if result else None


def segment_file(
    image_file: str | Path, output_file: str | Path, bundle: str | Path | None = None, **overrides: Any
) -> list[dict[str, Any]]:
    """Run the bundle's ``inference.yaml`` on one stack; returns the job's per-file figures.

    ``smoothing``, ``smoothing_z`` and ``stage1_flips`` overrides also reach run folders written
    before the options existed (emseg-monai < 0.8.6, < 0.8.9 and < 0.8.11, whose ``settings`` do not
    name them). A folder without ``smoothing_z`` that is given none gets the file's shift guard
    (``voxel_match.z_smoothing_for``, as the shipped configs hold it) where its config knows the
    trained voxel size: a bundle trained on thick sections then smooths a stack of shifted sections
    in Y and X only, as a newer one does.
    """
    root = resolve_bundle(bundle)
    config = inference_config(root)
    settings = config["settings"]
    for key in LATE_KEYS:
        if overrides.get(key) is not None and key not in settings:
            overrides[f"settings#{key}"] = overrides[key]
    if "smoothing_z" not in settings and overrides.get("smoothing_z") is None and _knows_voxel_sizes(config):
        guard = OLD_FOLDER_Z_GUARD if "smoothing" in config else OLD_FOLDER_Z_GUARD.replace(", @smoothing)", ")")
        overrides["settings#smoothing_z"] = guard
    return run_config(["inference.yaml"], root, image_file=str(image_file), output_file=str(output_file), **overrides)


def _knows_voxel_sizes(config: Any) -> bool:
    """Whether an ``inference.yaml`` has the keys the shift guard reads (bundle 0.9 and later)."""
    return all(key in config for key in ("trained_voxel_size", "match_voxel_size", "use_scm", "image_file"))


def evaluate_file(pred_file: str | Path, label_file: str | Path, bundle: str | Path | None = None, **overrides: Any):
    """Run the bundle's ``evaluate.yaml``: Dice and IoU of a mask stack (see ``evaluate_files``)."""
    return run_config(
        ["evaluate.yaml"], resolve_bundle(bundle), pred_file=str(pred_file), label_file=str(label_file), **overrides
    )


def load_bundle_networks(
    bundle: str | Path | None = None, device: str = "cpu", **overrides: Any
) -> tuple[torch.nn.Module, torch.nn.Module | None, InferenceSettings, Path]:
    """(stage 1, SCM or None, settings, bundle folder) of a bundle (None: the shipped one), in eval mode.

    ``overrides`` set ``inference.yaml`` keys first (``backend="torch"``, ``use_scm=False`` ...);
    the networks are plain torch modules unless ``backend`` says otherwise. The settings are for
    arrays: ``match_voxel_size`` is off and ``image_file`` None unless given (so no file of the
    working directory, such as the config's default ``data/image.tif``, is read).
    """
    root = resolve_bundle(bundle)
    parser = inference_config(root)
    parser["bundle_root"] = str(root)
    parser["device"] = device
    parser["backend"] = overrides.pop("backend", "torch")
    parser["match_voxel_size"] = overrides.pop("match_voxel_size", False)  # arrays: no file, no voxel size
    parser["image_file"] = overrides.pop("image_file", None)  # no file of the working directory is read
    for key, value in overrides.items():
        parser[key] = value
    for key in LATE_KEYS:
        if key in overrides and key not in parser["settings"]:  # a run folder from before 0.8.6 / 0.8.9 / 0.8.11
            parser["settings"][key] = overrides[key]
    stage1 = parser.get_parsed_content("network").eval()
    scm = parser.get_parsed_content("scm_network")
    return stage1, scm.eval() if scm is not None else None, parser.get_parsed_content("settings"), root


def thick_for_scm(volume: Any, config: Any) -> str | None:
    """Why a bundle's SCM should not run on ``volume``, a stack of unknown voxel size; None where it suits.

    ``volume`` is a (Z, Y, X) array (numpy, Zarr, Dask: only a few central crops are read) with no
    voxel size known, as a napari layer at the default scale; ``config`` the bundle's
    ``inference_config``. The volume's Z/XY ratio as its image shows it (``io.anisotropy``) is
    compared with the bundle's ``trained_voxel_size`` (or ``trained_z_ratio``) as for a file
    (``voxel_match.thicker_than_trained``);
    the text names the estimate (``voxel_match.thick_reason``).
    """
    from emseg_monai.inference.voxel_match import thick_reason, thicker_than_trained
    from emseg_monai.io.anisotropy import estimate_anisotropy

    estimate = estimate_anisotropy(volume)
    thicker = thicker_than_trained(estimate, config["trained_voxel_size"], config.get("trained_z_ratio"))
    return None if thicker is None else thick_reason(estimate, thicker, int(config["scm_window"]))


def inference_config(bundle: str | Path | None = None) -> Any:
    """A bundle's ``inference.yaml`` in a ``ConfigParser``, read but not parsed: ``config["use_scm"]`` is
    the raw value (``load_bundle_networks`` sets its overrides on it, then parses)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_path("inference.yaml", resolve_bundle(bundle)))
    return parser
