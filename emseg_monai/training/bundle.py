"""The bundle folder a training run leaves: configs whose defaults are the run's settings, metadata
with the scores it measured, a README, a licence. Settings travel with the weights this way: every
entry point (``python -m monai.bundle run``, ``create_workflow``, ``emseg segment --models RUN``)
reads the same ``RUN/configs/inference.yaml``; no side file is needed.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from emseg_monai import __version__
from emseg_monai.errors import InputError
from emseg_monai.io.stacks import atomic_write

SEPARATOR = "# ----"


def set_defaults(text: str, values: Mapping[str, Any], name: str = "config") -> str:
    """``text`` (a YAML config) with the values of its top-level ``values`` keys replaced.

    Comments and layout stay; a key the text lacks is added at the end of its first section (the
    hyper-parameters), marked ``# as trained``. Values are written as JSON, which YAML reads back.

    Examples
    --------
    >>> print(set_defaults("a: 1   # one\\nb: x\\n", {"a": 2, "b": [1, 2]}), end="")
    a: 2   # one
    b: [1, 2]
    """
    lines = text.splitlines()
    for key, value in values.items():
        pattern = re.compile(rf"^{re.escape(key)}:(\s*)(.*?)(\s+#.*)?$")
        new = f"{key}: {json.dumps(value)}"
        for i, line in enumerate(lines):
            match = pattern.match(line)
            if match:
                comment = match.group(3) or ""
                if comment:
                    column = len(line) - len(comment.lstrip())
                    new = new.ljust(column - 1) + " " + comment.lstrip()
                lines[i] = new
                break
        else:
            lines.insert(_end_of_first_section(lines), f"{new}  # as trained")
    result = "\n".join(lines) + "\n"
    parsed = yaml.safe_load(result)
    for key, value in values.items():
        if parsed.get(key) != value:
            raise InputError(f"could not set {key} = {value!r} in {name}: it reads back as {parsed.get(key)!r}")
    return result


def first_section_keys(path: str | Path) -> set[str]:
    """The top-level keys of a config's first ``# ----`` section: its hyper-parameters."""
    lines = Path(path).read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(SEPARATOR)]
    body = lines[starts[0] + 1 : starts[1] if len(starts) > 1 else len(lines)] if starts else []
    return {
        line.split(":", 1)[0]
        for line in body
        if line and not line[0].isspace() and not line.startswith("#") and ":" in line
    }


def _end_of_first_section(lines: list[str]) -> int:
    """Index just after the last line of the first ``# ----`` section (before its trailing blanks)."""
    starts = [i for i, line in enumerate(lines) if line.startswith(SEPARATOR)]
    end = starts[1] if len(starts) > 1 else len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    return end


def config_defaults(path: str | Path) -> dict[str, Any]:
    """The top-level values of a YAML config (expressions stay strings)."""
    return yaml.safe_load(Path(path).read_text()) or {}


def write_config(source: Path, target: Path, values: Mapping[str, Any]) -> None:
    """Copy config ``source`` to ``target`` with ``values`` as its defaults (atomically)."""
    text = set_defaults(source.read_text(), values, source.name) if values else source.read_text()
    atomic_write(target, lambda tmp: tmp.write_text(text), overwrite=True)


def write_run_bundle(
    run_dir: str | Path,
    source: str | Path,
    defaults: Mapping[str, Mapping[str, Any]],
    metrics: Mapping[str, Any],
    record: Mapping[str, Any],
) -> Path:
    """Make ``run_dir`` (which holds ``models/model.pt`` and ``models/scm.pt``) a complete bundle.

    Parameters
    ----------
    run_dir : path
        The training run's folder.
    source : path
        The bundle whose configs were used for training (``configs/``, ``LICENSE``).
    defaults : dict
        Per config file name (``"inference.yaml"``, ``"train.yaml"`` ...), the defaults to write.
    metrics : dict
        Validation scores (``eval_metrics`` of the metadata); may be empty.
    record : dict
        How the run was made: ``image``, ``label``, ``labeled_slices``, ``shape``, ``seconds``
        (per step), ``command``, ``seed``, ``device``, ``validation_slices``.

    Returns
    -------
    Path
        ``run_dir``.
    """
    run, source = Path(run_dir), Path(source)
    configs = run / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    for path in sorted((source / "configs").iterdir()):
        if path.is_file() and path.name != "metadata.json":
            write_config(path, configs / path.name, defaults.get(path.name, {}))
    meta = _metadata(json.loads((source / "configs" / "metadata.json").read_text()), defaults, metrics, record)
    atomic_write(configs / "metadata.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=4) + "\n"))
    if (source / "LICENSE").is_file() and source.resolve() != run.resolve():  # a fine-tuned run is its own source
        shutil.copyfile(source / "LICENSE", run / "LICENSE")
    (run / "docs").mkdir(exist_ok=True)
    trained = {name: config_defaults(configs / name) for name in ("inference.yaml", "train.yaml")}
    readme = _readme(meta, trained, metrics, record)
    atomic_write(run / "docs" / "README.md", lambda tmp: tmp.write_text(readme))
    return run


def _metadata(
    base: dict[str, Any],
    defaults: Mapping[str, Mapping[str, Any]],
    metrics: Mapping[str, Any],
    record: Mapping[str, Any],
) -> dict[str, Any]:
    import monai
    import numpy
    import torch

    meta = dict(base)
    inference = defaults.get("inference.yaml", {})
    window = int(inference.get("scm_window", 15))
    image = Path(str(record.get("image", "the training stack"))).name
    meta["version"] = "0.1.0"
    meta["changelog"] = {
        "0.1.0": f"trained by emseg train (emseg-monai {__version__}) on {image}, labeled slices "
        f"{record.get('labeled_slices')}, {time.strftime('%Y-%m-%d')}"
    }
    meta["monai_version"] = monai.__version__
    meta["pytorch_version"] = torch.__version__.split("+")[0]
    meta["numpy_version"] = numpy.__version__
    meta.setdefault("required_packages_version", {})["emseg-monai"] = __version__
    meta["name"] = f"EM mitochondria segmentation, trained on {image}"
    meta["data_source"] = (
        f"{image} (labels: {Path(str(record.get('label', ''))).name}), labeled slices {record.get('labeled_slices')}"
    )
    meta["eval_metrics"] = dict(metrics)
    run_keys = ("voxels", "section_shift_px", "mpp_check", "seconds", "command", "seed", "device", "precision")
    if any(k in record for k in run_keys):  # how this run was made and what it decided (emseg train)
        meta["emseg_training"] = {k: record[k] for k in run_keys if k in record}
    scm_format = json.loads(json.dumps(meta["scm_network_data_format"]))
    scm_format["inputs"]["image"]["num_channels"] = window
    kind = "probability" if inference.get("scm_input", "prob") == "prob" else "mask"
    scm_format["inputs"]["image"]["channel_def"] = {
        str(i): f"stage-1 {kind} of slice z{i - window // 2:+d}".replace("z+0", "z") for i in range(window)
    }
    meta["scm_network_data_format"] = scm_format
    return meta


def _decision_text(record: Mapping[str, Any], inference: Mapping[str, Any]) -> str:
    """The run's voxel size and MPP check, for the README (empty when the record has neither)."""
    voxels, check = record.get("voxels"), record.get("mpp_check")
    if not voxels and not check:
        return ""
    lines = ["### What the run decided"]
    if voxels:
        size = voxels.get("voxel_size_nm")
        if size:
            told = (
                f"voxel size {' x '.join(f'{v:g}' for v in size)} nm (Z, Y, X; from {voxels.get('source')}), "
                f"Z/XY ratio {voxels.get('anisotropy', 1.0):.2f}"
            )
        elif voxels.get("source") == "image":
            told = f"voxel size unknown: Z/XY ratio {voxels.get('anisotropy', 1.0):.1f} as estimated from the image"
        else:
            told = "voxel size unknown: isotropic voxels assumed (Z/XY ratio 1)"
        lines.append(f"- {told}; MPP's Z steps and the SCM window follow that ratio.")
        if not size and inference.get("trained_z_ratio") is not None:
            lines.append(
                f"- later stacks are judged against that ratio (`trained_z_ratio: {inference['trained_z_ratio']}` in "
                "configs/inference.yaml): sections at least twice as thick skip the SCM; pixel sizes are not matched "
                "(`--voxel-size Z,Y,X` at training records them)."
            )
    shift = record.get("section_shift_px")
    if shift is not None:
        along = "in Y and X only" if inference.get("smoothing_z") == 0 else "along Z as well"
        lines.append(
            f"- a quarter of the neighbouring sections shifted by {shift:g} px or more: the SCM's output is smoothed "
            f"by {inference.get('smoothing')} {along} (`smoothing`, `smoothing_z` in configs/inference.yaml)."
        )
    if inference.get("stage1_flips") in (True, "true"):
        lines.append(
            "- sections at least twice as thick as their pixels: stage 1 averages its 4 flips "
            "(`stage1_flips: true` in configs/inference.yaml; 4x the time of stage 1)."
        )
    if check:
        lines.append(f"- MPP check: {check.get('reason')}.")
    use = inference.get("use_scm", True)
    lines.append(
        "- This bundle segments with stage 1 then the SCM (`use_scm: true`)."
        if use in (True, "true")
        else "- This bundle segments with stage 1 alone (`use_scm: false`; `--use_scm true` runs the trained SCM)."
    )
    lines.append("- `finished_mask.tif`: the training stack finished with its labeled slices (ground truth kept).")
    return "\n".join(lines) + "\n"


def _readme(
    meta: Mapping[str, Any],
    defaults: Mapping[str, Mapping[str, Any]],
    metrics: Mapping[str, Any],
    record: Mapping[str, Any],
) -> str:
    inference = defaults.get("inference.yaml", {})
    train = defaults.get("train.yaml", {})
    shape = record.get("shape")
    seconds = record.get("seconds", {})
    if metrics:
        rows = [
            ("stage 1", metrics.get("stage1_val_mean_dice"), metrics.get("stage1_val_mean_iou")),
            ("MPP targets", metrics.get("mpp_val_mean_dice"), metrics.get("mpp_val_mean_iou")),
            ("final (what this bundle writes)", metrics.get("val_mean_dice"), metrics.get("val_mean_iou")),
            ("finished training stack", metrics.get("finished_val_mean_dice"), metrics.get("finished_val_mean_iou")),
        ]
        table = "| output | Dice (%) | IoU (%) |\n|---|---:|---:|\n" + "".join(
            f"| {name} | {100 * d:.2f} | {100 * i:.2f} |\n" for name, d, i in rows if d is not None
        )
        performance = (
            f"Scored on {metrics.get('val_slices')} validation slices of the training stack whose labels "
            "were not used for training (voxels pooled over the slices):\n\n" + table
        )
    else:
        performance = "No validation: the label stack had no labels outside the training slices."
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    decision = _decision_text(record, inference)
    kind = "probabilities" if inference.get("scm_input", "prob") == "prob" else "masks"
    return f"""# {meta["name"]}

### Authors
Trained with emseg-monai {__version__} (`emseg train`); the method and code: emseg-monai developers.

### Tags
Segmentation, Electron microscopy, Mitochondria, Semi-supervised, Few labels

## Model Description
This folder is a MONAI bundle. Its configs' defaults are the settings its weights were trained
with, so it runs with no override:

```bash
python -m monai.bundle run --config_file THIS_FOLDER/configs/inference.yaml \\
    --image_file STACK.tif --output_file MASKS.tif
emseg segment STACK.tif MASKS.tif --models THIS_FOLDER        # the same, as a shortcut
```

Two 2D MONAI `BasicUNet`s. Stage 1 (`network_def`, `models/model.pt`; 1 input channel, features
{tuple(inference.get("stage1_features", ()))}) segments each slice at 1/{inference.get("stage1_downsample")} of the XY
resolution. The SCM (`scm_network_def`, `models/scm.pt`; features {tuple(inference.get("scm_features", ()))}) reads the
stage-1 {kind} of the {inference.get("scm_window")} slices around each slice and refines it, at
1/{inference.get("scm_downsample")} of the XY resolution.

## Data
Trained on `{Path(str(record.get("image", ""))).name}` ({" x ".join(map(str, shape)) if shape else "?"}, Z x Y x X)
with the labels of slices `{record.get("labeled_slices")}` of `{Path(str(record.get("label", ""))).name}` only.

### Preprocessing
Intensities are mapped to [0, 1] by the stack's 0.5 and 99.5 percentiles (clipped); each slice is
resized by 1/downsample (area) before the network and its output resized back (bilinear).

## Performance
{performance}
{decision}
## Training
Command: `{record.get("command", "emseg train ...")}` (seed {record.get("seed")}, device {record.get("device")},
precision {record.get("precision", "?")});
{train.get("epochs", "?")} epochs of {train.get("iterations_per_epoch", "?")} iterations (batches of
{train.get("batch_size", "?")} crops of {train.get("crop_size", "?")} px); all settings: `configs/train.yaml`.
Time: {steps}.

## Additional Usage Steps
`configs/evaluate.yaml` scores masks against labels; `configs/train.yaml` (with `scm_train.yaml`
for the SCM) trains again with this run's settings as defaults.

## System Configuration
Trained and tested with emseg-monai {__version__}, MONAI {meta.get("monai_version")}, PyTorch
{meta.get("pytorch_version")}; inference runs on a CPU (ONNX Runtime by default) or a GPU.

## Limitations
Trained on one stack: expect the scores above on stacks of the same kind (sample preparation,
microscope, voxel size). On other data, label a few slices and train again. Research use only.

## Citation Info
Semi-Supervised Segmentation of Mitochondria from Electron Microscopy Images Using Spatial
Continuity, ISBI 2022.

## References
- emseg-monai: the package and the bundle this run was made with.
- MONAI bundle specification: https://docs.monai.io/en/latest/mb_specification.html
"""
