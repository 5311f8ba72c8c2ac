"""The CUDA paths: inference, bf16 and a whole tiny training run on a GPU, checked against the CPU.

Skipped where torch sees no CUDA GPU (CI and most machines); run on a lent GPU by
``.gpu/gpu_check.sh tests``. The rest of the suite pins ``--device cpu``, so these are the tests
that put the GPU to work.
"""

import numpy as np
import pytest
import torch
from monai.networks.nets import BasicUNet

from emseg_monai.cli import main
from emseg_monai.inference import InferenceSettings, predict_stack, segment
from emseg_monai.io import read_mask
from tests.conftest import TINY_FEATURES, train_argv

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def unet(in_channels=1):
    torch.manual_seed(0)
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=1, features=TINY_FEATURES)


def grey_levels(a, b):
    """(mean, max) absolute difference of two uint8 probability stacks, in grey levels."""
    diff = np.abs(a.astype(int) - b.astype(int))
    return diff.mean(), diff.max()


def test_predict_stack_on_cuda_matches_cpu():
    stack = np.random.default_rng(0).random((5, 64, 64)).astype(np.float32)
    net = unet(3)
    on_cpu = predict_stack(net, stack, window=3, device="cpu", progress=False)
    on_gpu = predict_stack(net, stack, window=3, device="cuda", progress=False)
    assert on_gpu.shape == on_cpu.shape and on_gpu.dtype == np.uint8
    assert grey_levels(on_gpu, on_cpu)[1] <= 1  # float32 on both: rounding only


def test_bf16_backend_on_cuda_is_close_to_float32_on_cpu():
    image = np.random.default_rng(1).integers(0, 255, (6, 64, 48), dtype=np.uint8)
    reference = segment(image, unet(), unet(3), InferenceSettings(window=3, backend="torch"), progress=False)
    half = segment(image, unet(), unet(3), InferenceSettings(window=3, backend="bf16", device="cuda"), progress=False)
    for key in ("stage1_prob", "final_prob"):
        mean, worst = grey_levels(half[key], reference[key])
        assert mean <= 2 and worst <= 24, (key, mean, worst)  # bf16 keeps 8 bits of mantissa


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_a_tiny_run_trains_on_cuda_and_its_weights_segment_alike_on_cpu(tiny_data, tmp_path, precision):
    run = tmp_path / "run"
    assert main(["--quiet", *train_argv(tiny_data, run, "--device", "cuda", "--precision", precision)]) == 0
    for name in ("models/model.pt", "models/scm.pt", "final_mask.tif", "finished_mask.tif"):
        assert (run / name).is_file(), name
    masks = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.tif"
        args = ["--quiet", "segment", str(tiny_data / "test_image.tif"), str(out), "--models", str(run / "models")]
        assert main([*args, "--device", device]) == 0
        masks[device] = read_mask(out)
    assert masks["cpu"].shape == (12, 32, 32)
    # the weights saved from the GPU load on the CPU and give the same masks up to float rounding
    # (and bf16 on the GPU when the run trained in bf16: its inference config says so)
    assert (masks["cpu"] == masks["cuda"]).mean() >= 0.99
