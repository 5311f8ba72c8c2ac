"""multi_gpu_train.yaml: two torchrun processes on CPU (gloo) train both stages; rank 0 writes once."""

import csv
import os
import shutil
import subprocess
import sys

import pytest
import torch
from monai.networks.nets import BasicUNet

from emseg_monai import default_bundle_root
from emseg_monai.workflows import run_config
from tests.conftest import TINY_FEATURES

CONFIGS = os.path.join(default_bundle_root(), "configs")
COMMON = {
    "epochs": 2,
    "iterations_per_epoch": 4,
    "batch_size": 2,
    "crop_size": 32,
    "downsample": 1,
    "features": TINY_FEATURES,
    "labeled_slices": "every:3",
}


def _torchrun(configs, data, out):
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    files = "[" + ",".join(f"'{os.path.join(CONFIGS, c)}'" for c in configs) + "]"
    args = [torchrun, "--standalone", "--nnodes", "1", "--nproc_per_node", "2", "-m", "monai.bundle", "run"]
    args += ["--config_file", files, "--meta_file", os.path.join(CONFIGS, "metadata.json")]
    args += ["--dataset_dir", str(data), "--output_dir", str(out)]
    for key, value in COMMON.items():
        args += [f"--{key}", str(value).replace(" ", "")]
    if "scm_train.yaml" in configs:
        args += ["--scm_window", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes, also on a GPU machine
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def _check(out, name, in_channels):
    weights = torch.load(out / "models" / ("model.pt" if name == "stage1" else f"{name}.pt"), weights_only=True)
    assert not any(k.startswith("module.") for k in weights)  # unwrapped from DistributedDataParallel
    BasicUNet(2, in_channels, 1, features=TINY_FEATURES).load_state_dict(weights)
    with open(out / f"{name}_history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # 8 crops per epoch shared by 2 processes, batch 2: 2 iterations per process and epoch
    assert [(int(r["epoch"]), int(r["iteration"])) for r in rows] == [(1, 2), (2, 4)]
    assert not [p.name for p in out.rglob(".*") if ".tmp" in p.name]


def test_a_process_without_a_gpu_is_named(monkeypatch):
    from emseg_monai.errors import InputError
    from emseg_monai.networks import process_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert process_device(0) == torch.device("cuda:0")
    with pytest.raises(InputError, match=r"LOCAL_RANK=1 has no GPU: this machine has 1 CUDA GPU\(s\)"):
        process_device(1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert process_device(3) == torch.device("cpu")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_two_process_training_of_both_stages(tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = _torchrun(["train.yaml", "multi_gpu_train.yaml"], tiny_data, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check(out, "stage1", 1)

    run_config(
        ["inference.yaml", "stage1_infer.yaml"],
        dataset_dir=str(tiny_data),
        output_dir=str(out),
        ckpt_dir=str(out / "models"),
        stage1_features=TINY_FEATURES,
        stage1_downsample=1,
        device="cpu",
    )
    run_config(["mpp.yaml"], dataset_dir=str(tiny_data), output_dir=str(out), labeled_slices="every:3", min_size=4)
    proc = _torchrun(["train.yaml", "scm_train.yaml", "multi_gpu_train.yaml"], tiny_data, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check(out, "scm", 3)
