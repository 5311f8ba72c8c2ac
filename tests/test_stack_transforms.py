"""NormalizeStack(d) and intensity_range of emseg_monai.transforms.stacks: accepted layouts, the
subsample the range comes from, dictionary form."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from emseg_monai.errors import InputError
from emseg_monai.transforms.stacks import NormalizeStack, NormalizeStackd, ProbToMask, intensity_range, normalize_stack


def test_intensity_range_reads_every_zth_slice_of_at_most_32():
    # 64 slices: every 2nd is read. Even slices hold their index, odd ones 1000, which must not be seen.
    stack = np.full((64, 8, 8), 1000, np.uint16)
    stack[::2] = np.arange(0, 64, 2, dtype=np.uint16)[:, None, None]
    expected = np.percentile(np.arange(0, 64, 2, dtype=np.float32).repeat(4), (0.5, 99.5))
    assert intensity_range(stack) == pytest.approx(tuple(expected))
    assert intensity_range(stack[:31]) == (0.0, 1000.0)  # under 32 slices: all read (odd ones too)


def test_normalize_stack_accepts_z_y_x_and_one_channel():
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 255, (4, 8, 8)).astype(np.uint8)
    expected = normalize_stack(volume)
    np.testing.assert_array_equal(NormalizeStack()(volume), expected)
    with_channel = NormalizeStack()(volume[None])
    assert with_channel.shape == (1, 4, 8, 8)
    np.testing.assert_array_equal(with_channel[0], expected)
    tensor = NormalizeStack()(MetaTensor(torch.from_numpy(volume[None]), meta={"filename_or_obj": "a.tif"}))
    assert isinstance(tensor, MetaTensor) and tensor.meta["filename_or_obj"] == "a.tif"
    np.testing.assert_array_equal(tensor[0].numpy(), expected)


@pytest.mark.parametrize("shape", [(8, 8), (2, 4, 8, 8), (1, 1, 4, 8, 8)])
def test_normalize_stack_refuses_other_layouts(shape):
    with pytest.raises(InputError, match=r"\(Z, Y, X\) or \(1, Z, Y, X\) stack, got shape"):
        NormalizeStack()(np.zeros(shape, np.uint8))


def test_dictionary_form_normalizes_its_keys_only():
    volume = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
    out = NormalizeStackd(keys="image")({"image": volume, "label": volume})
    np.testing.assert_array_equal(out["image"], normalize_stack(volume))
    assert out["label"] is volume


def test_prob_to_mask_threshold_must_lie_in_0_1():
    with pytest.raises(InputError, match="threshold"):
        ProbToMask(-0.5)
    assert ProbToMask(0.0)(np.zeros(2, np.float32)).tolist() == [255, 255]


def test_intensity_range_step_is_z_over_32():
    stack = np.full((62, 8, 8), 1000, np.uint16)  # 62 // 32 = 1: every slice is read
    stack[::2] = 0
    assert intensity_range(stack) == (0.0, 1000.0)


def test_to_mask_of_bool_and_thresholds_inside_0_1():
    from emseg_monai.transforms.stacks import to_mask

    assert to_mask(np.array([True, False])).tolist() == [255, 0]
    assert ProbToMask(1.0)(np.array([1.0, 0.99], np.float32)).tolist() == [255, 0]
    assert ProbToMask(0.7)(np.array([0.69, 0.7], np.float32)).tolist() == [0, 255]
