"""Same seed and data give identical weights and masks on CPU."""

import numpy as np
import torch

from emseg_monai.io import read_stack
from emseg_monai.workflows import run_config
from tests.conftest import TINY_FEATURES

TRAIN = {
    "epochs": 1,
    "iterations_per_epoch": 3,
    "batch_size": 2,
    "crop_size": 32,
    "downsample": 1,
    "features": TINY_FEATURES,
    "labeled_slices": "every:3",
    "device": "cpu",
    "seed": 7,
}


def train_and_segment(data, out):
    run_config(["train.yaml"], dataset_dir=str(data), output_dir=str(out), **TRAIN)
    run_config(
        ["inference.yaml", "stage1_infer.yaml"],
        dataset_dir=str(data),
        output_dir=str(out),
        ckpt_dir=str(out / "models"),
        stage1_features=TINY_FEATURES,
        stage1_downsample=1,
        device="cpu",
    )
    return torch.load(out / "models" / "model.pt", weights_only=True), read_stack(out / "stage1_prob.tif")


def test_two_runs_with_one_seed_are_identical(tiny_data, tmp_path):
    weights_a, prob_a = train_and_segment(tiny_data, tmp_path / "a")
    weights_b, prob_b = train_and_segment(tiny_data, tmp_path / "b")
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key
    np.testing.assert_array_equal(prob_a, prob_b)
