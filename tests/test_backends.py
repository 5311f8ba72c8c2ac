"""Inference backends give the torch network's outputs, pickle for Dask, and refuse bad settings."""

import pickle

import numpy as np
import pytest
import torch
import zarr
from monai.networks.nets import BasicUNet

from emseg_monai.cli import main
from emseg_monai.data import make_synthetic_stack
from emseg_monai.errors import InputError
from emseg_monai.inference import InferenceSettings, backends, segment, segment_blocks
from emseg_monai.inference.backends import OnnxNetwork, resolve_backend, to_backend
from emseg_monai.io import write_stack
from tests.conftest import TINY_FEATURES

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return BasicUNet(2, 3, 1, features=TINY_FEATURES).eval()


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (2, 3, 33, 47), (3, 3, 100, 37), (1, 3, 64, 80)])
def test_onnx_matches_torch_at_any_size(net, shape):
    """One export serves every batch and slice size, odd sides included (MONAI pads those inside)."""
    onnx = to_backend(net, "onnx")
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = net(x)
        got = onnx(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,atol", [("torch", 0), ("channels_last", 1e-4), ("bf16", 0.25)])
def test_torch_backends_match(net, name, atol):
    x = torch.rand((2, 3, 48, 40), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = torch.sigmoid(net(x))
        got = torch.sigmoid(to_backend(net, name)(x))
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert float((got - expected).abs().max()) <= atol
    if name == "torch":
        assert to_backend(net, name) is net


def test_onnx_network_pickles_without_its_session(net):
    onnx = to_backend(net, "onnx")
    x = torch.rand((1, 3, 32, 32))
    first = onnx(x)
    assert (onnx.digest, onnx.threads) in backends._SESSIONS
    data = pickle.dumps(onnx)
    assert b"InferenceSession" not in data
    copy = pickle.loads(data)
    assert copy.model == onnx.model and copy.session is onnx.session  # copies share this process's session
    torch.testing.assert_close(copy(x), first, atol=0, rtol=0)


def test_auto_picks_onnx_on_cpu_and_torch_without_it(net, monkeypatch):
    assert resolve_backend("auto", "cpu") == "onnx"
    assert isinstance(to_backend(net, "auto"), OnnxNetwork)
    assert resolve_backend("auto", "cuda") == "torch"
    monkeypatch.setattr(backends, "onnx_available", lambda: False)
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(InputError, match="needs ONNX Runtime"):
        resolve_backend("onnx", "cpu")


def test_bad_backend_settings():
    with pytest.raises(InputError, match="unknown inference backend 'tensorrt'"):
        resolve_backend("tensorrt")
    with pytest.raises(InputError, match="CPU only, got device cuda:1"):
        resolve_backend("onnx", "cuda:1")
    assert resolve_backend("bf16", torch.device("cuda")) == "bf16"  # CUDA autocast
    assert to_backend(None, "onnx") is None
    with pytest.raises(InputError, match="no Conv2d"):
        to_backend(torch.nn.Identity(), "onnx")


def test_segment_with_onnx_nearly_equals_torch():
    """Stage 1 + SCM through ONNX Runtime: masks equal torch's but for voxels at the threshold."""
    torch.manual_seed(0)
    stage1, scm = BasicUNet(2, 1, 1, features=TINY_FEATURES).eval(), BasicUNet(2, 5, 1, features=TINY_FEATURES).eval()
    image, _ = make_synthetic_stack((9, 40, 48), seed=3)
    settings = InferenceSettings(window=5, batch_size=4)
    reference = segment(image, stage1, scm, settings, progress=False)
    fast = segment(image, to_backend(stage1, "onnx"), to_backend(scm, "onnx"), settings, progress=False)
    diff = np.abs(fast["final_prob"].astype(int) - reference["final_prob"].astype(int))
    assert diff.max() <= 1  # uint8 probability steps of 1/255
    assert (fast["final_mask"] != reference["final_mask"]).mean() < 1e-3


def test_dask_workers_run_onnx_networks(tmp_path):
    """The ONNX modules travel to Dask workers (each builds its session) and give the same masks."""
    pytest.importorskip("distributed")
    from emseg_monai.inference.distributed import connect

    torch.manual_seed(0)
    nets = [to_backend(BasicUNet(2, c, 1, features=TINY_FEATURES).eval(), "onnx") for c in (1, 5)]
    image, _ = make_synthetic_stack((10, 40, 48), seed=4)
    write_stack(tmp_path / "image.tif", image)
    settings = InferenceSettings(window=5, batch_size=3)
    segment_blocks(tmp_path / "image.tif", tmp_path / "one.zarr", nets, settings, block=4, progress=False)
    client = connect(workers=2)
    try:
        segment_blocks(tmp_path / "image.tif", tmp_path / "dask.zarr", nets, settings, 4, client=client, progress=False)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    one = zarr.open_array(str(tmp_path / "one.zarr"), mode="r")[:]
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "dask.zarr"), mode="r")[:], one)


def test_cli_refuses_unknown_backend(tmp_path, capsys):
    image, _ = make_synthetic_stack((8, 32, 32), seed=0)
    write_stack(tmp_path / "image.tif", image)
    assert main(["segment", str(tmp_path / "image.tif"), str(tmp_path / "o.tif"), "--backend", "fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown inference backend 'fast'" in err[0]
    assert not (tmp_path / "o.tif").exists()
