"""The two stages as one graph (exchange.twostage) and the bioimage.io package (exchange.bioimageio)."""

import numpy as np
import pytest
import torch
from monai.networks.nets import BasicUNet

from emseg_monai.cli import main
from emseg_monai.data import make_synthetic_stack
from emseg_monai.errors import InputError
from emseg_monai.exchange.twostage import TwoStageNet, whole_factor
from emseg_monai.inference import InferenceSettings
from emseg_monai.inference.stages import segment
from emseg_monai.transforms.stacks import normalize_stack

FEATURES = (4, 4, 8, 8, 16, 4)


def _nets(window):
    torch.manual_seed(0)
    return (
        BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=FEATURES).eval(),
        BasicUNet(spatial_dims=2, in_channels=window, out_channels=1, features=FEATURES).eval(),
    )


@pytest.mark.parametrize(
    "factor, window, kind, smoothing, smoothing_z",
    [
        (1, 3, "prob", 0.0, None),
        (2, 5, "prob", 1.5, None),
        (2, 3, "mask", 1.0, None),
        (1, 3, "prob", 1.0, None),
        (1, 3, "prob", 1.0, 0.0),  # Y and X only
        (2, 3, "prob", 0.0, 1.0),  # Z only
    ],
)
def test_one_graph_equals_the_two_stages(factor, window, kind, smoothing, smoothing_z):
    stage1, scm = _nets(window)
    settings = InferenceSettings(
        window=window,
        input_kind=kind,
        stage1_downsample=factor,
        scm_downsample=factor,
        backend="torch",
        tile=0,
        smoothing=smoothing,
        smoothing_z=smoothing_z,
    )
    image = make_synthetic_stack((9, 64, 96), seed=2)[0]
    expected = segment(image, stage1, scm, settings, progress=False)
    net = TwoStageNet(stage1, scm, window, factor, factor, kind, chunk=4, smoothing=smoothing, smoothing_z=smoothing_z)
    graph = torch.jit.script(net.eval())
    x = torch.from_numpy(normalize_stack(image))[None, None]
    with torch.inference_mode():
        prob = graph(x)
        other = x.flip(2)  # the SCM is not symmetric in Z: another stack
        twice = graph(torch.cat([x, other]))  # a batch of two stacks: each on its own
        alone = graph(other)
    stored = torch.round(prob[0, 0] * 255).to(torch.uint8).numpy()
    if max(smoothing, smoothing_z or 0) == 0:
        np.testing.assert_array_equal(stored, expected["final_prob"])
    else:  # float32 sums here, SciPy's float64 there: a voxel may round the other way
        steps = np.abs(stored.astype(int) - expected["final_prob"])
        assert steps.max() <= 1 and np.mean(steps == 0) > 0.999
    torch.testing.assert_close(twice[0], prob[0], rtol=0, atol=1e-5)  # other batch sizes: other kernels
    torch.testing.assert_close(twice[1], alone[0], rtol=0, atol=1e-5)
    first_only = TwoStageNet(stage1, None, window, factor, factor, kind).eval()
    with torch.inference_mode():
        stage1_prob = torch.round(first_only(x)[0, 0] * 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(stage1_prob, expected["stage1_prob"])


@pytest.mark.parametrize("value", [1.5, 0.5, "2.5"])
def test_single_graph_needs_whole_resolution_factors(value):
    with pytest.raises(InputError, match=f"stage1_downsample must be a whole number >= 1 .*got {value}"):
        whole_factor(value, "stage1_downsample")
    assert whole_factor(2.0, "x") == 2


def test_export_refuses_bad_outputs_in_one_line(tiny_run, tmp_path, capsys):
    pytest.importorskip("bioimageio.core")
    assert main(["export-bioimageio", str(tmp_path / "model.txt"), "--models", str(tiny_run)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"emseg export-bioimageio: error: the package is a .zip file, got {tmp_path / 'model.txt'}"
    )
    kept = tmp_path / "model.zip"
    kept.write_bytes(b"older package")
    assert main(["export-bioimageio", str(kept), "--models", str(tiny_run)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert kept.read_bytes() == b"older package"
    missing = tmp_path / "no" / "model.zip"
    assert main(["export-bioimageio", str(missing), "--models", str(tiny_run)]) == 2
    assert "folder of the package does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]


def test_a_failed_export_leaves_nothing_behind(tiny_run, tmp_path, monkeypatch):
    pytest.importorskip("bioimageio.core")
    from emseg_monai.exchange import bioimageio

    def broken(*args):
        raise InputError("the ONNX export broke")

    monkeypatch.setattr(bioimageio, "_export_onnx", broken)
    with pytest.raises(InputError, match="the ONNX export broke"):
        bioimageio.export_bioimageio(tmp_path / "model.zip", tiny_run)
    assert list(tmp_path.iterdir()) == []  # neither the package nor its build folder


def test_export_warns_that_the_bundles_flips_are_left_out(tiny_run, tmp_path, monkeypatch, caplog):
    """A run on thick sections writes stage1_flips true; the package runs each network once."""
    import logging
    import shutil

    pytest.importorskip("bioimageio.core")
    from emseg_monai.exchange import bioimageio

    def stop(*args):
        raise InputError("stopped after the checks")

    monkeypatch.setattr(bioimageio, "_export_onnx", stop)
    for flips, run in ((False, tiny_run), (True, tmp_path / "thick_run")):
        if flips:
            shutil.copytree(tiny_run, run)
            config = run / "configs" / "inference.yaml"
            text = config.read_text()
            assert "\nstage1_flips: false " in text
            config.write_text(text.replace("\nstage1_flips: false ", "\nstage1_flips: true ", 1))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="emseg_monai.exchange.bioimageio"):
            with pytest.raises(InputError, match="stopped after the checks"):
                bioimageio.export_bioimageio(tmp_path / "model.zip", run)
        assert ("test-time flips (flips, stage1_flips) are not part of it" in caplog.text) is flips


def test_missing_extra_is_named(monkeypatch):
    import importlib.util

    from emseg_monai.exchange import bioimageio

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name.startswith("bioimageio") else real(name))
    with pytest.raises(InputError, match=r'pip install "emseg-monai\[bioimageio\]" \(bioimageio.spec is missing\)'):
        bioimageio.export_bioimageio("x.zip")


def test_package_passes_bioimageio_test_and_predicts_our_masks(tiny_run, tmp_path, capsys):
    """A run with a wide smoothing (reach 12 slices): the package's test input grows with the halo
    and still passes bioimage.io's test. (The shipped weights' package, window 15 and the default
    smoothing, passes it in the docs' test of napari_and_bioimageio.md; its test input has grown
    too. A package whose halo fits the usual 16-slice test input is no longer put through
    bioimage.io's own test here.)"""
    pytest.importorskip("bioimageio.core")
    import io
    import re
    import shutil
    import zipfile

    from bioimageio.spec import load_model_description

    from emseg_monai.exchange.bioimageio import load_bundle_model, predict_package_input, predict_with_package, z_halo

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = run / "configs" / "inference.yaml"
    config.write_text(re.sub(r"(?m)^smoothing: .*$", "smoothing: 3.0", config.read_text()))
    package = tmp_path / "wide.zip"
    assert main(["--quiet", "export-bioimageio", str(package), "--models", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {package}; bioimage.io test: passed"
    model = load_bundle_model(run)
    assert model.settings.smoothing == 3.0
    halo = z_halo(model)
    # the SCM's window (N // 2 slices on each side) and the reach of its smoothing (4 sigma)
    assert halo == model.settings.window // 2 + int(4 * model.settings.smoothing + 0.5)
    descr = load_model_description(str(package))
    assert [getattr(a, "halo", 0) for a in descr.outputs[0].axes][2:] == [halo, 0, 0]  # the Z halo as above
    assert descr.inputs[0].pad.mode == "edge"  # halo slices repeat the ends, as emseg does
    fewest = [a.size.min for a in descr.inputs[0].axes if str(a.id) == "z"][0]
    assert fewest > 16  # more than the usual 16-slice test input: the test input grew with the halo
    with zipfile.ZipFile(package) as archive:
        name = next(n for n in archive.namelist() if n.endswith("test_input.npy"))
        assert np.load(io.BytesIO(archive.read(name))).shape[2] == fewest

    z = 2 * halo + 8  # more slices than the package's fewest (2 * halo + 1): no padding of its own
    image = make_synthetic_stack((z, 64, 80), seed=5)[0]
    # the whole stack at once: bioimageio.core pads the halo (edge), then normalises, then crops
    padded = np.concatenate([image[:1]] * halo + [image] + [image[-1:]] * halo)
    whole_expected = predict_package_input(model, padded)[0, 0, halo:-halo] > 0
    # in blocks: normalised as a whole first, then blocks with the halo of their neighbours; the
    # graph on the whole stack, whose smoothing mirrors the SCM's output at the ends where the
    # package's edge padding repeats the end slices: equal wherever a slice's halo is inside the stack
    expected = predict_package_input(model, image)[0, 0] > 0
    inner = slice(halo, z - halo)
    for weights in ("torchscript", "onnx"):
        mask = predict_with_package(package, image, weights)
        assert mask.shape == image.shape and mask.dtype == np.uint8
        assert np.mean((mask > 0) == whole_expected) > 0.999, weights  # ONNX Runtime rounds a little differently
        blocks = predict_with_package(package, image, weights, block_slices=2)
        assert np.mean((blocks[inner] > 0) == expected[inner]) > 0.999, weights
        assert np.mean((blocks > 0) == expected) > 0.98, weights
    ours = segment(image, model.stage1, model.scm, model.settings.replace(backend="torch"), progress=False)
    assert np.mean((ours["final_mask"][inner] > 0) == expected[inner]) > 0.98  # emseg's percentiles: a subsample
    short = predict_with_package(package, image[:1], "torchscript")  # fewer slices than N: ends repeated
    assert short.shape == (1, 64, 80)
    # 2 * halo + 1 = 27 edge-repeated slices against the graph's own ends: the wide Gaussian rounds a
    # little differently (13 of 5120 pixels on the tiny run; 0 at the default smoothing)
    assert np.mean((short > 0) == (predict_package_input(model, image[:1])[0, 0] > 0)) > 0.995
    with pytest.raises(InputError, match="block_slices must be >= 0, got -1"):
        predict_with_package(package, image, block_slices=-1)
    with pytest.raises(InputError, match=r"takes a \(Z, Y, X\) stack, got shape \(64, 80\)"):
        predict_with_package(package, image[0])


def test_sample_stack_has_the_packages_fewest_slices(tmp_path):
    from emseg_monai.exchange.bioimageio import SAMPLE_SHAPE, sample_stack
    from emseg_monai.io import write_stack

    assert sample_stack(1, slices=5).shape[0] == SAMPLE_SHAPE[0]  # at least the usual test input
    assert sample_stack(1, slices=27).shape == (27, 256, 256)  # synthetic: as many as the package takes
    short = make_synthetic_stack((8, 64, 64), seed=1)[0][:5]
    write_stack(tmp_path / "short.tif", short)
    padded = sample_stack(1, tmp_path / "short.tif", slices=9)  # a short file: its ends repeated
    assert padded.shape == (9, 64, 64)
    np.testing.assert_array_equal(padded[:3], np.repeat(short[:1], 3, axis=0))
    np.testing.assert_array_equal(padded[2:7], short)
    np.testing.assert_array_equal(padded[-3:], np.repeat(short[-1:], 3, axis=0))
