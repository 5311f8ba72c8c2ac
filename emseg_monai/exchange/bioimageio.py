"""A weights bundle as a bioimage.io model package (format 0.5): Fiji (deepImageJ), ilastik, napari, Python.

The two stages go in as one graph (``twostage.TwoStageNet``), saved as TorchScript and as ONNX:

- input ``raw``: (batch, channel, z, y, x) float32 (give float32: bioimageio.core scales other
  types in their own type); the consumer maps the intensities with the
  0.5 / 99.5 percentiles of the whole stack to [0, 1] and clips them (the package says so in its
  pre-processing, as ``emseg segment`` does; ours reads a subsample for the percentiles);
- Y and X: multiples of ``16 x`` the training resolution factor, at least ``64 x`` it (consumers
  pad to those sizes); Z: at least N slices (the SCM's window; 1 without the SCM);
- output ``mask``: the SCM's probability binarised at the bundle's threshold, 0/1, same shape, with
  a Z halo of N // 2 slices: a consumer that tiles in Z overlaps its blocks by that much, and pads a
  stack's ends by repeating the end slice (the input's ``pad: edge``), as ``emseg segment`` does.
  The ``pad`` mode is set explicitly: bioimage.io's writer leaves out a default ``mode``, and a
  ``pad: {}`` reads back as zero padding, which would shift the intensity percentiles.

Needs ``pip install "emseg-monai[bioimageio]"`` (bioimageio.core, bioimageio.spec).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emseg_monai import __version__
from emseg_monai.errors import InputError
from emseg_monai.exchange.twostage import TwoStageNet, whole_factor
from emseg_monai.inference.settings import InferenceSettings
from emseg_monai.transforms.windows import smoothing_reach

logger = logging.getLogger(__name__)

LOWER, UPPER = 0.5, 99.5  # intensity percentiles, as transforms.stacks.intensity_range
SAMPLE_SHAPE = (16, 256, 256)  # largest test input (Z, Y, X)
METHOD_CODE = "https://github.com/cbmi-group/mpp"  # the paper's public code
DATA_DOI = "10.1109/TMI.2011.2171705"  # Lucchi et al. 2012, the EPFL volume


def require_bioimageio() -> None:
    """InputError naming the extra to install when bioimageio.core / bioimageio.spec are missing."""
    import importlib.util

    for name in ("bioimageio.spec", "bioimageio.core"):
        if importlib.util.find_spec(name) is None:
            raise InputError(f'bioimage.io packages need pip install "emseg-monai[bioimageio]" ({name} is missing)')


@dataclass(frozen=True)
class BundleModel:
    """A bundle's networks (on the CPU, eval mode) and its inference settings."""

    stage1: torch.nn.Module
    scm: torch.nn.Module | None
    settings: InferenceSettings
    bundle: Path

    @property
    def factor(self) -> int:
        """The XY resolution factor of both stages (they must agree for one graph)."""
        first = whole_factor(self.settings.stage1_downsample, "stage1_downsample")
        second = whole_factor(self.settings.scm_downsample, "scm_downsample")
        if self.scm is not None and first != second:
            raise InputError(f"stage 1 and the SCM run at different resolutions ({first} and {second}): not exportable")
        return first

    def graph(self, chunk: int = 8) -> TwoStageNet:
        s = self.settings
        return TwoStageNet(
            self.stage1,
            self.scm,
            s.window,
            s.stage1_downsample,
            s.scm_downsample,
            s.input_kind,
            s.threshold,
            chunk,
            s.smoothing,
            s.smoothing_z,
        ).eval()


def load_bundle_model(bundle: str | Path | None = None) -> BundleModel:
    """Networks and settings of a weights bundle (a run folder of ``emseg train``; None: the shipped one)."""
    from emseg_monai.workflows import load_bundle_networks

    return BundleModel(*load_bundle_networks(bundle))


def normalise_like_bioimageio(stack: np.ndarray) -> np.ndarray:
    """(Z, Y, X) -> float32 [0, 1] as the package's pre-processing does: whole-stack percentiles, clipped."""
    stack = np.asarray(stack, dtype=np.float32)
    lo, hi = np.percentile(stack, (LOWER, UPPER))
    return np.clip((stack - lo) / (hi - lo + 1e-6), 0.0, 1.0).astype(np.float32)


def sample_stack(factor: int, image: str | Path | None = None, seed: int = 0, slices: int = 1) -> np.ndarray:
    """A test input (Z, Y, X): the middle of ``image`` (else a synthetic EM stack).

    Its sides are multiples of ``16 x factor`` and at least ``64 x factor`` px, the package's sizes;
    it has ``SAMPLE_SHAPE[0]`` slices, or ``slices`` (the package's fewest) where that is more, a
    shorter ``image`` having its end slices repeated up to that number.
    """
    step = 16 * factor
    depth = max(SAMPLE_SHAPE[0], int(slices))
    if image is None:
        from emseg_monai.data.synthetic import make_synthetic_stack

        side = max(4 * step, SAMPLE_SHAPE[1] - SAMPLE_SHAPE[1] % step)
        return make_synthetic_stack((depth, side, side), seed=seed)[0]
    from emseg_monai.io import read_stack

    stack = read_stack(image)
    z, y, x = (min(n, limit) for n, limit in zip(stack.shape, (depth, *SAMPLE_SHAPE[1:])))
    y, x = y - y % step, x - x % step
    if y < 4 * step or x < 4 * step:
        shape = tuple(stack.shape)
        raise InputError(
            f"sample image {image} is too small: slices need at least {4 * step} x {4 * step} px, got {shape}"
        )
    z0, y0, x0 = ((n - m) // 2 for n, m in zip(stack.shape, (z, y, x)))
    middle = stack[z0 : z0 + z, y0 : y0 + y, x0 : x0 + x]
    short = max(0, int(slices) - z)  # fewer slices than the package takes: repeat the ends
    return np.ascontiguousarray(np.pad(middle, ((short // 2, short - short // 2), (0, 0), (0, 0)), mode="edge"))


def z_halo(model: BundleModel) -> int:
    """Slices of context the final mask of a slice needs on each side: with the SCM, N // 2 plus the
    reach of its smoothing (``InferenceSettings.scm_halo``), else 0."""
    return model.settings.scm_halo if model.scm is not None else 0


def binarize_threshold(threshold: float) -> float:
    """The bioimage.io ``binarize`` threshold (``p > t``) equal to emseg's mask rule on the graph's output.

    The graph rounds its probabilities to 1/255 (the stage files' steps); emseg's masks are
    ``round(p x 255) >= 255 x threshold``, i.e. ``p > (ceil(255 x threshold) - 0.5) / 255``.
    """
    return (math.ceil(255 * threshold) - 0.5) / 255


def predict_package_input(model: BundleModel, stack: np.ndarray) -> np.ndarray:
    """What the package returns for a raw (Z, Y, X) stack: (1, 1, Z, Y, X) float32 0/1."""
    x = torch.from_numpy(normalise_like_bioimageio(stack))[None, None]
    with torch.inference_mode():
        prob = model.graph()(x)
    return (prob > binarize_threshold(model.settings.threshold)).to(torch.float32).numpy()


def _cover(path: Path, stack: np.ndarray, mask: np.ndarray) -> None:
    """PNG (2:1): the middle slice, and the same slice with the mask outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    middle = stack.shape[0] // 2
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), dpi=100)
    for ax in axes:
        ax.imshow(stack[middle], cmap="gray")
        ax.set_axis_off()
    axes[1].contour(mask[middle] > 0, levels=[0.5], colors=["#ff3b30"], linewidths=1.2)
    axes[0].set_title("EM slice", fontsize=10)
    axes[1].set_title("mitochondria (emseg-monai)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _documentation(model: BundleModel, factor: int) -> str:
    s = model.settings
    halo_z = z_halo(model)
    along_z = s.z_smoothing
    if model.scm is None or max(s.smoothing, along_z) == 0:
        smoothed = "then"
    elif along_z == s.smoothing:
        smoothed = (
            f"the SCM's probabilities are smoothed by a 3D Gaussian of {s.smoothing:g} slices and network pixels, then"
        )
    else:
        smoothed = (
            f"the SCM's probabilities are smoothed by a Gaussian of {along_z:g} slices along Z and"
            f" {s.smoothing:g} network pixels in Y and X, then"
        )
    reach = smoothing_reach(along_z) if model.scm is not None else 0
    ends = (
        f" Within {reach} slices of a stack's ends the smoothing reads the SCM's output on the repeated end"
        " slices, where emseg-monai mirrors its output about the end: a few voxels there can differ."
        if reach
        else ""
    )
    ends_short = " and, within the smoothing's reach of the stack's ends, in what lies beyond them" if reach else ""
    stages = "stage 1 then the spatial-continuity model (SCM)" if model.scm is not None else "stage 1 only"
    return f"""# emseg-monai: mitochondria in 3D EM stacks

Semantic segmentation of mitochondria in electron-microscopy volumes (FIB-SEM, serial sections),
exported from the emseg-monai weights bundle `{model.bundle.name}` (emseg-monai {__version__}).

## What runs

One graph holding {stages}: stage 1, a 2D U-Net, gives each slice a probability map; the SCM, a 2D
U-Net whose input is the {s.window} stage-1 maps around a slice (z - {s.window // 2} .. z + {s.window // 2}, the
stack ends repeated), refines the middle one. Both run at 1/{factor} of the XY resolution; {smoothed}
their outputs are resized back. The output is 1 where the SCM's probability, rounded to 1/255 as
emseg-monai stores it, reaches {s.threshold}: mitochondria.

## Input

- axes `batch, channel, z, y, x`, one channel of raw EM intensities as float32 (convert other types
  first: bioimageio.core scales them in their own type), mitochondria dark as in the training data;
- Y and X: multiples of {16 * factor} px, at least {64 * factor} (consumers pad to those sizes);
  Z: at least {2 * halo_z + 1} slices (repeat the end slices of a shorter stack);
- pre-processing (done by the consumer): the 0.5 and 99.5 percentiles of the whole stack mapped to
  0 and 1, then clipped to [0, 1];
- a pixel size near the training data's gives the best results (the shipped weights: 5 nm FIB-SEM,
  run at 10 nm).

## Tiling

The output of slice z depends on slices z - {halo_z} .. z + {halo_z}: the output declares a Z halo
of {halo_z}, and the input pads with its edge (the end slice repeated, as emseg-monai does at a
stack's ends). Consumers that tile in Z (bioimageio.core with a block shape) give each block
{halo_z} slices of context on each side and keep the middles, and get the masks of the whole stack.{ends}
bioimageio.core normalises the whole stack before it splits it into blocks; run in one piece, it
pads first and then normalises, so the repeated end slices count in the percentiles (on the EPFL
stack they do not move them). Slices that are entirely 0 at the ends of a block count as padding
(the windows repeat the last real slice), for consumers that pad with zeros. Tiles in Y and X
change the masks a little wherever they are cut: the networks normalise each slice as a whole
(instance normalisation). The ONNX graph runs all slices of a block in one batch: its memory grows
with the block (the TorchScript graph runs 8 slices at a time).

## Same masks as emseg-monai

On the same stack and weights, `emseg segment` and this package differ only in the intensity
percentiles (emseg-monai reads a subsample of the stack), in padding to the sizes above{ends_short}.

## Use

```python
from bioimageio.core import load_description, predict
model = load_description("this_package.zip")
```

In Fiji: install deepImageJ, then *Install model* from this zip file. In napari and ilastik: load
the zip file with their bioimage.io model support.

## Training

{_training_text(model.bundle)}

## Licence and citation

Apache-2.0 (weights and code). Method: Semi-supervised segmentation of mitochondria from electron
microscopy images using spatial continuity (ISBI 2022; code {METHOD_CODE}). Data of the shipped
weights: Lucchi et al., IEEE TMI 2012 (doi:{DATA_DOI}).
"""


def _training_text(bundle: Path) -> str:
    import json

    meta_file = bundle / "configs" / "metadata.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return "See the weights bundle's documentation."
    parts = [meta.get("description", ""), meta.get("data_source", "")]
    return "\n\n".join(p for p in parts if p) or "See the weights bundle's documentation."


def _description(model: BundleModel, files: dict[str, Path], factor: int) -> Any:
    """The bioimage.io ``ModelDescr`` (format 0.5) of the package's files."""
    from bioimageio.spec.model import v0_5 as spec

    step = 16 * factor
    halo = z_halo(model)
    raw, mask = spec.TensorId("raw"), spec.TensorId("mask")
    space = [  # Z: at least one slice beside the halo on each side (consumers pad a shorter stack)
        spec.SpaceInputAxis(id=spec.AxisId("z"), size=spec.ParameterizedSize(min=2 * halo + 1, step=1)),
        spec.SpaceInputAxis(id=spec.AxisId("y"), size=spec.ParameterizedSize(min=4 * step, step=step)),
        spec.SpaceInputAxis(id=spec.AxisId("x"), size=spec.ParameterizedSize(min=4 * step, step=step)),
    ]

    def as_input(name: str) -> dict[str, Any]:
        return {"id": spec.AxisId(name), "size": spec.SizeReference(tensor_id=raw, axis_id=spec.AxisId(name))}

    # slice z needs z - halo .. z + halo: consumers pad (edge: the end slice repeated) or overlap blocks
    z_out = spec.SpaceOutputAxisWithHalo(**as_input("z"), halo=halo) if halo else spec.SpaceOutputAxis(**as_input("z"))
    out_space = [z_out, spec.SpaceOutputAxis(**as_input("y")), spec.SpaceOutputAxis(**as_input("x"))]
    inputs = spec.InputTensorDescr(
        id=raw,
        description="raw EM intensities (Z, Y, X), one channel",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("raw")]), *space],
        test_tensor=spec.FileDescr(source=files["test_input"]),
        sample_tensor=spec.FileDescr(source=files["sample_input"]),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        # the halo repeats the end slices, as emseg-monai does at a stack's ends; the mode is set
        # explicitly, else it is saved as `pad: {}`, which reads back as zero padding
        pad=spec.EdgePadding(mode="edge"),
        preprocessing=[
            spec.ScaleRangeDescr(
                kwargs=spec.ScaleRangeKwargs(
                    axes=[spec.AxisId("z"), spec.AxisId("y"), spec.AxisId("x")],
                    min_percentile=LOWER,
                    max_percentile=UPPER,
                )
            ),
            spec.ClipDescr(kwargs=spec.ClipKwargs(min=0.0, max=1.0)),
        ],
    )
    outputs = spec.OutputTensorDescr(
        id=mask,
        description="mitochondria mask, 1 inside",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("mitochondria")]), *out_space],
        test_tensor=spec.FileDescr(source=files["test_output"]),
        sample_tensor=spec.FileDescr(source=files["sample_output"]),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        postprocessing=[
            spec.BinarizeDescr(kwargs=spec.BinarizeKwargs(threshold=binarize_threshold(model.settings.threshold)))
        ],
    )
    torch_version = spec.Version(torch.__version__.split("+")[0])
    weights = spec.WeightsDescr(
        torchscript=spec.TorchscriptWeightsDescr(source=files["torchscript"], pytorch_version=torch_version),
        onnx=spec.OnnxWeightsDescr(source=files["onnx"], opset_version=files["opset"], parent="torchscript"),
    )
    return spec.ModelDescr(
        name="emseg-monai mitochondria EM two-stage",
        description="Mitochondria in 3D electron microscopy: a 2D U-Net and a spatial-continuity network "
        "trained from a few labeled slices, as one graph.",
        authors=[spec.Author(name="emseg-monai developers")],
        cite=[
            spec.CiteEntry(
                text="Semi-supervised segmentation of mitochondria from electron microscopy images using spatial "
                "continuity (ISBI 2022)",
                url=spec.HttpUrl(METHOD_CODE),
            ),
            spec.CiteEntry(
                text="Lucchi et al., Supervoxel-based segmentation of mitochondria in EM image stacks with learned "
                "shape features, IEEE TMI 2012",
                doi=spec.Doi(DATA_DOI),
            ),
        ],
        license=spec.LicenseId("Apache-2.0"),
        documentation=spec.FileDescr(source=files["documentation"]),
        covers=[spec.FileDescr(source=files["cover"])],
        tags=["electron-microscopy", "mitochondria", "semantic-segmentation", "3d", "fib-sem", "pytorch", "onnx"],
        version=spec.Version(__version__),
        inputs=[inputs],
        outputs=[outputs],
        weights=weights,
    )


def _export_onnx(graph: TwoStageNet, example: torch.Tensor, path: Path) -> int:
    """ONNX of the graph with dynamic batch, Z, Y and X; returns the opset."""
    from emseg_monai.inference.backends import _quiet_exporter

    example = torch.cat([example, example])  # a batch of 2: a batch of 1 would fix the batch size at 1
    dims = {
        0: torch.export.Dim("batch", min=1),
        2: torch.export.Dim("z", min=1),
        3: torch.export.Dim("y", min=32),
        4: torch.export.Dim("x", min=32),
    }
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            dynamic_shapes={"x": dims},
            input_names=["raw"],
            output_names=["mask"],
            verbose=False,
        )
    program.save(str(path))
    return int(program.model.opset_imports.get("", 18))


def export_bioimageio(
    output: str | Path,
    bundle: str | Path | None = None,
    sample: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the bioimage.io package (zip) of a weights bundle; returns its path.

    ``sample`` is a stack file whose middle becomes the package's test input (the default, a
    synthetic EM stack, shows the format but not the model at its best). Nothing is written
    unless the whole package is built; an existing ``output`` is kept unless ``overwrite``.
    """
    require_bioimageio()
    from bioimageio.spec import save_bioimageio_package

    output = Path(output)
    if output.suffix != ".zip":
        raise InputError(f"the package is a .zip file, got {output}")
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise InputError(f"folder of the package does not exist: {output.parent}")
    model = load_bundle_model(bundle)
    factor = model.factor
    if model.settings.flips or model.settings.stage1_flips:
        logger.warning(
            "the package runs each network once: the bundle's test-time flips (flips, stage1_flips) are not part of "
            "it, so its masks can differ from emseg segment's"
        )
    stack = sample_stack(factor, sample, slices=2 * z_halo(model) + 1)  # the package's fewest slices
    expected = predict_package_input(model, stack)
    example = torch.from_numpy(normalise_like_bioimageio(stack))[None, None]
    with tempfile.TemporaryDirectory(prefix=".emseg-bioimageio-", dir=output.parent) as tmp:
        folder = Path(tmp)
        files: dict[str, Any] = {"test_input": folder / "test_input.npy", "test_output": folder / "test_output.npy"}
        np.save(files["test_input"], stack.astype(np.float32)[None, None])
        np.save(files["test_output"], expected)
        import tifffile

        files["sample_input"], files["sample_output"] = folder / "sample_input.tif", folder / "sample_output.tif"
        tifffile.imwrite(files["sample_input"], stack[None, None])
        tifffile.imwrite(files["sample_output"], expected.astype(np.uint8))
        files["cover"] = folder / "cover.png"
        _cover(files["cover"], stack, expected[0, 0])
        files["documentation"] = folder / "README.md"
        files["documentation"].write_text(_documentation(model, factor))
        files["torchscript"] = folder / "twostage.pt"
        torch.jit.script(model.graph()).save(str(files["torchscript"]))
        files["onnx"] = folder / "twostage.onnx"
        files["opset"] = _export_onnx(model.graph(chunk=0), example, files["onnx"])
        descr = _description(model, files, factor)
        partial = folder / output.name
        save_bioimageio_package(descr, output_path=partial)
        shutil.move(str(partial), output)
    logger.info("wrote %s", output)
    return output


def check_package(package: str | Path) -> Any:
    """bioimage.io's own checks of a package (format, and each weight format reproducing the test output).

    Returns bioimageio's ``ValidationSummary`` (``.status`` is ``"passed"`` or ``"failed"``).
    """
    require_bioimageio()
    from bioimageio.core import test_model

    return test_model(str(package))


def predict_with_package(
    package: str | Path, stack: np.ndarray, weight_format: str | None = None, block_slices: int = 0
) -> np.ndarray:
    """Masks (Z, Y, X) uint8 0/255 of a raw stack, predicted by bioimageio.core from a package.

    The way a Python consumer runs the package: bioimageio.core does the pre-processing, runs the
    graph (``weight_format`` ``"torchscript"`` or ``"onnx"``; None: bioimageio's choice) and binarises.
    Y and X must be multiples of the package's step (see its documentation). ``block_slices`` > 0:
    bioimageio.core runs blocks of that many slices (plus the package's Z halo on each side), so
    memory is bounded by the block; 0: the whole stack at once. A stack shorter than the package's
    fewest slices (N with the SCM) gets its end slices repeated up to that number, and cropped back.
    """
    require_bioimageio()
    from bioimageio.core import create_prediction_pipeline, load_model_description, predict

    if int(block_slices) < 0:
        raise InputError(f"block_slices must be >= 0, got {block_slices}")
    if np.ndim(stack) != 3:
        raise InputError(f"the package takes a (Z, Y, X) stack, got shape {np.shape(stack)}")
    descr = load_model_description(str(package))
    pipeline = create_prediction_pipeline(descr, weight_format=weight_format, devices=["cpu"])
    halo = max((getattr(a, "halo", 0) for a in descr.outputs[0].axes if str(a.id) == "z"), default=0)
    fewest = max((getattr(a.size, "min", 1) for a in descr.inputs[0].axes if str(a.id) == "z"), default=1)
    stack = np.asarray(stack, dtype=np.float32)
    before = max(0, fewest - stack.shape[0]) // 2
    after = max(0, fewest - stack.shape[0]) - before
    raw = np.pad(stack, ((before, after), (0, 0), (0, 0)), mode="edge")[None, None]
    blocks = None
    if block_slices:  # bioimageio.core's block shape counts the halo read on both sides
        shape = dict(zip(("batch", "channel", "z", "y", "x"), raw.shape))
        size = min(int(block_slices) + 2 * halo, raw.shape[2])
        blocks = {"raw": {**shape, "z": size}} if size > 2 * halo else None  # else too short to split
    sample = predict(model=pipeline, inputs={"raw": raw}, input_block_shape=blocks)
    mask = np.asarray(next(iter(sample.members.values())).data.values)[0, 0]  # (Z, Y, X) 0/1
    return (mask[before : before + stack.shape[0]] > 0).astype(np.uint8) * np.uint8(255)
