"""The bundle passes MONAI's checks offline: verify_metadata, verify_net_in_out, ckpt_export, onnx_export."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emseg_monai import default_bundle_root
from emseg_monai.networks import load_weights

BUNDLE = Path(default_bundle_root())
META = BUNDLE / "configs" / "metadata.json"
SCHEMA = BUNDLE / "docs" / "meta_schema.json"
INFERENCE = BUNDLE / "configs" / "inference.yaml"
NETS = {"network_def": ("model.pt", 1), "scm_network_def": ("scm.pt", 15)}


def _verify_metadata(meta_file, tmp_path):
    schema = tmp_path / "schema.json"  # a copy: verify_metadata reuses an existing file, never downloads
    schema.write_bytes(SCHEMA.read_bytes())
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", "verify_metadata"]
        + ["--meta_file", str(meta_file), "--filepath", str(schema)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_verify_metadata_passes_offline(tmp_path):
    proc = _verify_metadata(META, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "verified with no error" in proc.stdout + proc.stderr


@pytest.mark.parametrize("drop", ["task", "network_data_format"])
def test_verify_metadata_catches_a_missing_field(tmp_path, drop):
    meta = json.loads(META.read_text())
    meta.pop(drop)
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    proc = _verify_metadata(broken, tmp_path)
    assert proc.returncode != 0 and drop in proc.stderr


def test_metadata_describes_both_networks():
    meta = json.loads(META.read_text())
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 1
    assert meta["scm_network_data_format"]["inputs"]["image"]["num_channels"] == 15
    assert meta["version"] in meta["changelog"]


@pytest.mark.parametrize("net_id", list(NETS))
def test_verify_net_in_out(net_id):
    from monai.bundle import verify_net_in_out

    channels = NETS[net_id][1]
    verify_net_in_out(
        net_id=net_id,
        meta_file=str(META),
        config_file=str(INFERENCE),
        n=2,
        device="cpu",
        **{"_meta_#network_data_format#inputs#image#num_channels": channels},
    )


def _eager(net_id):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(INFERENCE))
    net = parser.get_parsed_content(net_id)
    return load_weights(net, BUNDLE / "models" / NETS[net_id][0]).eval()


def _sample(net_id):
    return torch.rand(1, NETS[net_id][1], 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("net_id", list(NETS))
def test_torchscript_export_matches_eager(net_id, tmp_path):
    from monai.bundle import ckpt_export

    out = tmp_path / f"{net_id}.ts"
    ckpt_export(
        net_id=net_id,
        filepath=str(out),
        ckpt_file=str(BUNDLE / "models" / NETS[net_id][0]),
        meta_file=str(META),
        config_file=str(INFERENCE),
    )
    scripted = torch.jit.load(str(out), map_location="cpu").eval()
    x = _sample(net_id)
    with torch.inference_mode():
        torch.testing.assert_close(scripted(x), _eager(net_id)(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("net_id", list(NETS))
def test_onnx_export_matches_eager(net_id, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from monai.bundle import onnx_export

    out = tmp_path / f"{net_id}.onnx"
    onnx_export(
        net_id=net_id,
        filepath=str(out),
        ckpt_file=str(BUNDLE / "models" / NETS[net_id][0]),
        meta_file=str(META),
        config_file=str(INFERENCE),
        input_shape=[1, NETS[net_id][1], 64, 64],
    )
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = _sample(net_id)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.inference_mode():
        expected = _eager(net_id)(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
