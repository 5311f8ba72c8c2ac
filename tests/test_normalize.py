"""Tests for emseg_monai.data.normalize: intensity mapping, slice resizing and scaled sizes."""

from __future__ import annotations

import numpy as np
import pytest

from emseg_monai.data.normalize import intensity_range, normalize_stack, resize_slices, scaled_size


def noisy(dtype, shape=(4, 32, 32), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    high = {np.uint8: 255, np.int16: 30000}.get(dtype, 60000)
    return rng.integers(0, high, shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int16])
def test_normalize_stack_maps_to_unit_range(dtype):
    stack = noisy(dtype)
    out = normalize_stack(stack)
    assert out.dtype == np.float32
    assert out.shape == stack.shape
    assert out.min() == 0.0
    assert out.max() == 1.0
    assert 0.3 < out.mean() < 0.7


def test_normalize_stack_is_monotonic():
    stack = noisy(np.uint16)
    out = normalize_stack(stack)
    order = np.argsort(stack, axis=None, kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= 0)


def test_normalize_stack_does_not_modify_input():
    for stack in (noisy(np.uint8), noisy(np.float32)):
        before = stack.copy()
        out = normalize_stack(stack)
        np.testing.assert_array_equal(stack, before)
        assert not np.shares_memory(out, stack)


def test_normalize_stack_explicit_range_clips():
    stack = np.array([[[0, 50, 100, 150, 200]]], np.uint8)
    out = normalize_stack(stack, value_range=(50.0, 150.0))
    np.testing.assert_allclose(out, [[[0.0, 0.0, 0.5, 1.0, 1.0]]])


@pytest.mark.parametrize("value", [0, 7, 255])
def test_constant_stack_does_not_divide_by_zero(value):
    stack = np.full((3, 8, 8), value, np.uint8)
    with np.errstate(all="raise"):
        out = normalize_stack(stack)
    assert np.isfinite(out).all()
    assert np.all(out == 0.0)
    lo, hi = intensity_range(stack)
    assert hi > lo


def test_intensity_range_ignores_outliers():
    stack = np.full((8, 64, 64), 100, np.float32)
    stack[:, ::4, ::4] = np.linspace(100, 200, stack[:, ::4, ::4].size).reshape(stack[:, ::4, ::4].shape)
    stack[0, 0, 0] = 1e6
    lo, hi = intensity_range(stack)
    assert 100 <= lo < 101
    assert hi < 200


def test_resize_slices_down():
    stack = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    out = resize_slices(stack, (4, 4))
    assert out.shape == (2, 4, 4)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, stack.reshape(2, 4, 2, 4, 2).mean(axis=(2, 4)))


def test_resize_slices_up():
    stack = np.random.default_rng(1).random((3, 5, 6)).astype(np.float32)
    out = resize_slices(stack, (10, 12))
    assert out.shape == (3, 10, 12)
    assert out.dtype == np.float32
    assert stack.min() - 1e-6 <= out.min() and out.max() <= stack.max() + 1e-6
    np.testing.assert_allclose(out.mean(axis=(1, 2)), stack.mean(axis=(1, 2)), atol=0.05)


def test_resize_slices_many_slices_chunked():
    stack = np.stack([np.full((8, 8), z, np.float32) for z in range(40)])
    out = resize_slices(stack, (2, 2))
    assert out.shape == (40, 2, 2)
    np.testing.assert_allclose(out[:, 0, 0], np.arange(40))


def test_resize_slices_binary_gives_bool():
    mask = np.zeros((2, 8, 8), bool)
    mask[:, :4, :4] = True
    out = resize_slices(mask, (4, 4), binary=True)
    assert out.dtype == bool
    expected = np.zeros((2, 4, 4), bool)
    expected[:, :2, :2] = True
    np.testing.assert_array_equal(out, expected)
    up = resize_slices(mask, (16, 16), binary=True)
    assert up.dtype == bool
    assert up[:, :7, :7].all() and not up[:, 9:, :].any()


def test_resize_slices_binary_uint8_0_255():
    mask = np.zeros((1, 4, 4), np.uint8)
    mask[0, :2] = 255
    out = resize_slices(mask, (2, 2), binary=True)
    np.testing.assert_array_equal(out, [[[True, True], [False, False]]])


@pytest.mark.parametrize("binary", [False, True])
def test_resize_slices_same_size_copies(binary):
    stack = (np.arange(2 * 4 * 5).reshape(2, 4, 5) % 3 == 0).astype(np.uint8)
    out = resize_slices(stack, (4, 5), binary=binary)
    assert out.dtype == (bool if binary else np.float32)
    assert not np.shares_memory(out, stack)
    np.testing.assert_array_equal(out, stack.astype(out.dtype))


def test_resize_slices_same_size_float32_is_a_copy():
    stack = np.ones((2, 4, 4), np.float32)
    out = resize_slices(stack, (4, 4))
    out[...] = 0
    assert stack.all()


@pytest.mark.parametrize(
    ("shape", "downsample", "expected"),
    [
        ((100, 60), 1, (100, 60)),
        ((100, 60), 2, (50, 30)),
        ((101, 61), 2.0, (50, 30)),
        ((15, 15), 2.0, (8, 8)),
        ((7, 9), 1.5, (5, 6)),
        ((3, 3), 10, (1, 1)),
    ],
)
def test_scaled_size(shape, downsample, expected):
    assert scaled_size(shape, downsample) == expected


@pytest.mark.parametrize("downsample", [0.5, 0, -2, float("nan")])
def test_scaled_size_rejects_below_one(downsample):
    with pytest.raises(ValueError, match="downsample must be >= 1, got"):
        scaled_size((10, 10), downsample)


@pytest.mark.parametrize("size", [(20, 24), (40, 48)])
def test_resize_slices_prepare_equals_preparing_first(size):
    """Normalising 16 slices at a time inside the resize gives what normalising the whole stack gives."""
    rng = np.random.default_rng(3)
    stack = rng.integers(0, 256, (37, 40, 48), dtype=np.uint8)
    value_range = intensity_range(stack)
    got = resize_slices(stack, size, prepare=lambda chunk: normalize_stack(chunk, value_range))
    np.testing.assert_array_equal(got, resize_slices(normalize_stack(stack, value_range), size))
    assert got.dtype == np.float32 and got.shape == (37, *size)


def test_to_mask_thresholds_exactly_for_uint8_and_float_probabilities():
    from emseg_monai.transforms.stacks import to_mask

    stored = np.array([0, 127, 128, 255], dtype=np.uint8)
    out = to_mask(stored)
    assert out.dtype == np.uint8 and out.tolist() == [0, 0, 255, 255]
    assert to_mask(stored, threshold=0.25).tolist() == [0, 255, 255, 255]
    assert to_mask(np.array([0.0, 0.49, 0.5, 1.0], dtype=np.float32)).tolist() == [0, 0, 255, 255]


def test_intensity_range_of_a_constant_stack_is_one_wide():
    from emseg_monai.transforms.stacks import intensity_range

    assert intensity_range(np.full((3, 8, 8), 7, np.uint8)) == (7.0, 8.0)
    lo, hi = intensity_range(np.arange(64 * 8 * 8, dtype=np.float32).reshape(64, 8, 8))
    assert 0 < lo < hi < 64 * 8 * 8  # percentiles of the subsample, all 64 slices seen (every 2nd)


@pytest.mark.parametrize("shape, size", [((8, 8), (2, 2)), ((16, 8), (12, 4)), ((8, 16), (4, 12)), ((8, 16), (8, 4))])
def test_resize_tensor_averages_areas_whenever_both_sides_shrink(shape, size):
    import torch

    from emseg_monai.data.normalize import resize_tensor

    batch = torch.from_numpy(np.random.default_rng(1).random((1, 1, *shape), dtype=np.float32))
    expected = torch.nn.functional.adaptive_avg_pool2d(batch, size)
    torch.testing.assert_close(resize_tensor(batch, size), expected, rtol=0, atol=1e-6)


def test_resize_tensor_is_bilinear_when_one_side_grows():
    import torch

    from emseg_monai.data.normalize import resize_tensor

    batch = torch.from_numpy(np.random.default_rng(2).random((1, 1, 8, 8), dtype=np.float32))
    expected = torch.nn.functional.interpolate(batch, size=(4, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resize_tensor(batch, (4, 12)), expected, rtol=0, atol=0)
    assert resize_tensor(batch, (8, 8)) is batch


def test_resize_slices_binary_keeps_exactly_one_half():
    stack = np.array([[[1, 1], [0, 0]]], dtype=np.float32)  # (1, 2, 2) -> (1, 1, 2): both 0.5
    assert resize_slices(stack, (1, 2), binary=True).tolist() == [[[True, True]]]
