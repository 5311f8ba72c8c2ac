"""The shipped bundle and a freshly trained run pass the model zoo's checks offline: its folder rules,
verify_metadata, verify_net_in_out (n=1 and 2, both networks), ckpt_export, onnx_export."""

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


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("net_id", list(NETS))
def test_verify_net_in_out(net_id, n):
    """``network_data_format`` (32*n) lets MONAI's check pass with its default n=1 (a 32 x 32 input)."""
    from monai.bundle import verify_net_in_out

    channels = NETS[net_id][1]
    overrides = {} if net_id == "network_def" else {"_meta_#network_data_format#inputs#image#num_channels": channels}
    verify_net_in_out(net_id=net_id, meta_file=str(META), config_file=str(INFERENCE), n=n, device="cpu", **overrides)


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
    """``ckpt_export`` of models/model.pt (the zoo's check) and of the SCM."""
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


# ---------------------------------------------------------------- the model zoo's folder rules
ZOO_SECTIONS = ("Model Description", "Data", "Preprocessing", "Performance", "System Configuration", "Limitations")
ZOO_SECTIONS += ("Citation Info", "References")


def check_zoo_folder(bundle: Path) -> dict:
    """The files and rules of the zoo's verify_bundle.py and its README template; returns the metadata."""
    import emseg_monai

    for name in ("LICENSE", "configs/metadata.json", "configs/inference.yaml", "models/model.pt", "docs/README.md"):
        assert (bundle / name).is_file(), name
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    assert meta["required_packages_version"]["emseg-monai"] == emseg_monai.__version__
    readme = (bundle / "docs" / "README.md").read_text().replace("*", "")
    for section in ZOO_SECTIONS:
        assert f"## {section}" in readme or f"### {section}" in readme or f"#### {section}" in readme, section
    for path in bundle.rglob("*"):
        if path.is_file():
            assert path.stat().st_size < 25 * 2**20, path
    for config in (bundle / "configs").iterdir():
        text = config.read_text()
        for personal in ("/work/", "/home/", "/root/", "/tmp/", "/Users/", ":\\"):
            assert personal not in text, (config, personal)
    return meta


def test_shipped_bundle_follows_the_zoo_rules():
    meta = check_zoo_folder(BUNDLE)
    assert (BUNDLE / "docs" / "data_license.txt").read_text().strip()
    assert meta["eval_metrics"]["val_mean_dice"] > 0.9


def test_trained_run_is_a_zoo_bundle(tiny_run, tmp_path):
    """A run of emseg train passes the same checks as the shipped bundle, with the shipped schema."""
    from monai.bundle import ckpt_export, verify_net_in_out

    meta = check_zoo_folder(tiny_run)
    assert set(meta["eval_metrics"]) >= {"val_mean_dice", "stage1_val_mean_dice", "mpp_val_mean_dice"}
    proc = _verify_metadata(tiny_run / "configs" / "metadata.json", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config, meta_file = str(tiny_run / "configs" / "inference.yaml"), str(tiny_run / "configs" / "metadata.json")
    for n in (1, 2):
        verify_net_in_out(net_id="network_def", meta_file=meta_file, config_file=config, n=n, device="cpu")
        verify_net_in_out(
            net_id="scm_network_def",
            meta_file=meta_file,
            config_file=config,
            n=n,
            device="cpu",
            **{"_meta_#network_data_format#inputs#image#num_channels": 3},
        )
    ckpt_export(
        net_id="network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(tiny_run / "models" / "model.pt"),
        meta_file=meta_file,
        config_file=config,
        bundle_root=str(tiny_run),
    )
    assert torch.jit.load(str(tmp_path / "model.ts"))(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32)
