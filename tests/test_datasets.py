"""Tests for emseg_monai.data.datasets (StackSliceDataset) and emseg_monai.data.training (stack loading)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from monai.transforms import Compose, Lambdad, ToTensord

from emseg_monai.data import (
    StackSliceDataset,
    load_scm_stack,
    load_stage1_stack,
    make_synthetic_stack,
)
from emseg_monai.errors import InputError
from emseg_monai.io import write_stack
from emseg_monai.transforms import scm_inputs

Z, Y, X = 12, 32, 32


def ramp_stack(n=7, h=4, w=3) -> np.ndarray:
    return np.stack([np.full((h, w), z, np.float32) for z in range(n)])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stacks")
    image, label = make_synthetic_stack((Z, Y, X), seed=0)
    label[:, :4, :4] = 255
    prob = np.clip(label.astype(np.int16) // 2 + np.arange(X, dtype=np.int16) * 4, 0, 255).astype(np.uint8)
    target = label.copy()
    target[:, -4:, -4:] = 255
    write_stack(folder / "image.tif", image)
    write_stack(folder / "label.tif", label)
    write_stack(folder / "label01.nii.gz", (label > 0).astype(np.uint8))
    write_stack(folder / "prob.tif", prob)
    write_stack(folder / "target.tif", target)
    write_stack(folder / "small_label.tif", label[:, :16, :16])
    return {"folder": folder, "image": image, "label": label > 0, "prob": prob, "target": target > 0}


def test_window_1_sample():
    image = ramp_stack()
    label = np.zeros(image.shape, bool)
    label[3, 1, 2] = True
    sample = StackSliceDataset(image, label, indices=[3])[0]
    assert sample["slice"] == 3
    assert sample["image"].shape == (1, 4, 3)
    assert sample["image"].dtype == np.float32
    assert np.all(sample["image"] == 3)
    assert sample["label"].shape == (1, 4, 3)
    assert sample["label"].dtype == np.float32
    assert sample["label"].sum() == 1.0 and sample["label"][0, 1, 2] == 1.0


@pytest.mark.parametrize(
    ("z", "channels"),
    [(0, [0, 0, 0, 1, 2]), (1, [0, 0, 1, 2, 3]), (3, [1, 2, 3, 4, 5]), (6, [4, 5, 6, 6, 6])],
)
def test_window_5_replicates_stack_ends(z, channels):
    image = ramp_stack()
    sample = StackSliceDataset(image, image > 2, indices=[z], window=5)[0]
    assert sample["image"].shape == (5, 4, 3)
    assert sample["image"][:, 0, 0].tolist() == channels
    assert sample["label"].shape == (1, 4, 3)
    assert np.all(sample["label"] == float(z > 2))


def test_uint8_input_is_cast_to_float32():
    image = (ramp_stack() * 10).astype(np.uint8)
    sample = StackSliceDataset(image, None, indices=[2], window=3)[0]
    assert sample["image"].dtype == np.float32
    assert sample["image"][:, 0, 0].tolist() == [10.0, 20.0, 30.0]


def test_no_label_gives_no_label_key():
    sample = StackSliceDataset(ramp_stack(), None, indices=[0])[0]
    assert set(sample) == {"image", "slice"}


def test_length_defaults_to_number_of_indices():
    assert len(StackSliceDataset(ramp_stack(), None, indices=[1, 4, 5])) == 3


def test_length_cycles_indices():
    ds = StackSliceDataset(ramp_stack(), None, indices=[2, 5], length=5)
    assert len(ds) == 5
    assert [ds[i]["slice"] for i in range(5)] == [2, 5, 2, 5, 2]
    assert [float(ds[i]["image"][0, 0, 0]) for i in range(5)] == [2.0, 5.0, 2.0, 5.0, 2.0]


def test_transform_is_applied():
    calls = []

    def record(sample):
        calls.append(sample["slice"])
        return {**sample, "image": sample["image"] * 2}

    ds = StackSliceDataset(ramp_stack(), None, indices=[4], transform=record)
    assert float(ds[0]["image"][0, 0, 0]) == 8.0
    assert calls == [4]


def test_monai_dict_transforms_and_dataloader():
    image = ramp_stack()
    transform = Compose([ToTensord(keys=["image", "label"]), Lambdad(keys="label", func=lambda t: 1 - t)])
    ds = StackSliceDataset(image, image > 3, indices=[0, 6], window=3, length=4, transform=transform)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert isinstance(batch["image"], torch.Tensor)
    assert tuple(batch["image"].shape) == (4, 3, 4, 3)
    assert tuple(batch["label"].shape) == (4, 1, 4, 3)
    assert batch["slice"].tolist() == [0, 6, 0, 6]
    assert batch["label"][:, 0, 0, 0].tolist() == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("length", [None, 10])
def test_empty_indices_give_empty_dataset(length):
    ds = StackSliceDataset(ramp_stack(), None, indices=[], length=length)
    assert len(ds) == 0
    assert list(torch.utils.data.DataLoader(ds, batch_size=2)) == []


def test_load_stage1_stack(files):
    folder = files["folder"]
    stack = load_stage1_stack(folder / "image.tif", folder / "label.tif", "every:4")
    assert stack.image.shape == (Z, Y, X)
    assert stack.image.dtype == np.float32
    assert stack.image.min() >= 0.0 and stack.image.max() <= 1.0
    assert stack.target.dtype == bool
    np.testing.assert_array_equal(stack.target, files["label"])
    np.testing.assert_array_equal(stack.truth, files["label"])
    assert stack.train_slices.tolist() == [0, 4, 8]
    assert stack.val_slices.tolist() == [1, 2, 3, 5, 6, 7, 9, 10, 11]


def test_load_stage1_stack_image_is_normalised_image(files):
    folder = files["folder"]
    stack = load_stage1_stack(folder / "image.tif", folder / "label.tif", [0])
    image = files["image"].astype(np.float32)
    assert np.corrcoef(stack.image.ravel(), image.ravel())[0, 1] > 0.99


def test_load_stage1_stack_accepts_0_1_nifti_labels(files):
    folder = files["folder"]
    stack = load_stage1_stack(folder / "image.tif", folder / "label01.nii.gz", "0,5")
    np.testing.assert_array_equal(stack.target, files["label"])
    assert stack.train_slices.tolist() == [0, 5]


def test_load_stage1_stack_downsample_halves_yx(files):
    folder = files["folder"]
    stack = load_stage1_stack(folder / "image.tif", folder / "label.tif", "every:4", downsample=2)
    assert stack.image.shape == (Z, Y // 2, X // 2)
    assert stack.target.shape == stack.truth.shape == (Z, Y // 2, X // 2)
    assert stack.target.dtype == bool
    assert stack.target[:, :2, :2].all()
    assert stack.val_slices.size == Z - 3


@pytest.mark.parametrize(
    ("val_slices", "val_max_slices", "expected"),
    [
        ("rest", 32, [1, 2, 3, 5, 6, 7, 9, 10, 11]),
        ("rest", 3, [1, 6, 11]),
        ("rest", 0, [1, 2, 3, 5, 6, 7, 9, 10, 11]),
        ("none", 32, []),
        (" NONE ", 32, []),
        ("0:3", 32, [0, 1, 2]),
        ("every:2", 2, [0, 10]),
    ],
)
def test_val_slice_selection(files, val_slices, val_max_slices, expected):
    folder = files["folder"]
    stack = load_stage1_stack(
        folder / "image.tif", folder / "label.tif", "every:4", val_slices=val_slices, val_max_slices=val_max_slices
    )
    assert stack.val_slices.dtype == np.int64
    assert stack.val_slices.tolist() == expected


def test_val_dropped_when_truth_is_empty_on_val_slices(tmp_path, caplog):
    image = make_synthetic_stack((Z, Y, X), seed=2)[0]
    label = np.zeros((Z, Y, X), np.uint8)
    label[::4, 8:16, 8:16] = 255
    write_stack(tmp_path / "image.tif", image)
    write_stack(tmp_path / "label.tif", label)
    with caplog.at_level(logging.WARNING, logger="emseg_monai.data.training"):
        stack = load_stage1_stack(tmp_path / "image.tif", tmp_path / "label.tif", "every:4")
    assert stack.val_slices.size == 0
    assert stack.train_slices.tolist() == [0, 4, 8]
    assert "no foreground" in caplog.text


def test_load_stage1_stack_errors(files):
    folder = files["folder"]
    with pytest.raises(InputError, match=r"has shape \(12, 16, 16\), expected \(12, 32, 32\)"):
        load_stage1_stack(folder / "image.tif", folder / "small_label.tif", "all")
    with pytest.raises(InputError, match="outside the stack of 12 slices"):
        load_stage1_stack(folder / "image.tif", folder / "label.tif", "12")
    with pytest.raises(InputError, match="does not exist"):
        load_stage1_stack(folder / "missing.tif", folder / "label.tif", "all")


def test_load_scm_stack_prob_inputs(files):
    folder = files["folder"]
    stack = load_scm_stack(folder / "prob.tif", folder / "target.tif", folder / "label.tif", "every:4")
    assert stack.image.dtype == np.float32
    np.testing.assert_allclose(stack.image, files["prob"] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(stack.target, files["target"])
    np.testing.assert_array_equal(stack.truth, files["label"])
    assert stack.train_slices.tolist() == list(range(Z))
    assert stack.val_slices.tolist() == [1, 2, 3, 5, 6, 7, 9, 10, 11]


def test_load_scm_stack_mask_inputs_and_options(files):
    folder = files["folder"]
    stack = load_scm_stack(
        folder / "prob.tif",
        folder / "target.tif",
        folder / "label.tif",
        "every:4",
        train_slices="0:6",
        input_kind="mask",
        threshold=0.25,
        val_slices="none",
    )
    np.testing.assert_array_equal(stack.image, (files["prob"] >= 0.25 * 255).astype(np.float32))
    assert set(np.unique(stack.image).tolist()) == {0.0, 1.0}
    assert stack.train_slices.tolist() == [0, 1, 2, 3, 4, 5]
    assert stack.val_slices.size == 0


def test_load_scm_stack_without_labels(files):
    folder = files["folder"]
    stack = load_scm_stack(folder / "prob.tif", folder / "target.tif", None, "every:4")
    assert stack.truth is None
    assert stack.val_slices.size == 0


def test_load_scm_stack_downsample_halves_yx(files):
    folder = files["folder"]
    stack = load_scm_stack(folder / "prob.tif", folder / "target.tif", folder / "label.tif", "every:4", downsample=2)
    assert stack.image.shape == stack.target.shape == stack.truth.shape == (Z, Y // 2, X // 2)
    assert stack.target.dtype == bool and stack.truth.dtype == bool
    assert stack.target[:, -2:, -2:].all()


def test_load_scm_stack_errors(files):
    folder = files["folder"]
    with pytest.raises(InputError, match=r"small_label.tif has shape \(12, 16, 16\)"):
        load_scm_stack(folder / "prob.tif", folder / "target.tif", folder / "small_label.tif", "all")
    with pytest.raises(InputError, match="SCM input must be 'prob' or 'mask', got 'logits'"):
        load_scm_stack(folder / "prob.tif", folder / "target.tif", None, "all", input_kind="logits")


def test_scm_inputs_uint8_prob_and_mask():
    prob = np.array([[[0, 127, 128, 255]]], np.uint8)
    np.testing.assert_allclose(scm_inputs(prob, "prob"), [[[0.0, 127 / 255, 128 / 255, 1.0]]], rtol=1e-6)
    mask = scm_inputs(prob, "mask")
    assert mask.dtype == np.float32
    assert mask.tolist() == [[[0.0, 0.0, 1.0, 1.0]]]
    assert scm_inputs(prob, "mask", threshold=0.0).tolist() == [[[1.0, 1.0, 1.0, 1.0]]]


def test_scm_inputs_float_prob_and_mask():
    prob = np.array([[[0.0, 0.3, 0.5, 0.9]]], np.float32)
    out = scm_inputs(prob, "prob")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, prob)
    assert scm_inputs(prob, "mask", threshold=0.4).tolist() == [[[0.0, 0.0, 1.0, 1.0]]]


@pytest.mark.parametrize("kind", ["probs", "Mask", ""])
def test_scm_inputs_rejects_unknown_kind(kind):
    with pytest.raises(InputError, match=f"SCM input must be 'prob' or 'mask', got '{kind}'"):
        scm_inputs(np.zeros((1, 2, 2), np.uint8), kind)


def test_dataset_indices_wrap_like_a_sequence_and_stop_at_its_ends():
    image = np.arange(5 * 8 * 8, dtype=np.uint8).reshape(5, 8, 8)
    data = StackSliceDataset(image, None, indices=[1, 3], length=4)
    assert len(data) == 4 and [data[i]["slice"] for i in range(4)] == [1, 3, 1, 3]
    assert data[-1]["slice"] == 3 and data[-4]["slice"] == 1
    for bad in (4, -5):
        with pytest.raises(IndexError, match=f"sample {bad} is outside the dataset of 4 samples"):
            data[bad]
