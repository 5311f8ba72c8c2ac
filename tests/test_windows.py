"""Tests for emseg_monai.transforms.windows: N-slice windows around a slice."""

from __future__ import annotations

import numpy as np
import pytest

from emseg_monai.errors import InputError
from emseg_monai.transforms.windows import SliceWindow, SliceWindowd, check_window, extract_windows, window_indices


def ramp_stack(n=10, h=3, w=4) -> np.ndarray:
    return np.arange(n, dtype=np.float32)[:, None, None] + np.zeros((h, w), np.float32)


@pytest.mark.parametrize(
    ("center", "n_slices", "window", "expected"),
    [
        (0, 10, 5, [0, 0, 0, 1, 2]),
        (1, 10, 5, [0, 0, 1, 2, 3]),
        (5, 10, 5, [3, 4, 5, 6, 7]),
        (8, 10, 5, [6, 7, 8, 9, 9]),
        (9, 10, 5, [7, 8, 9, 9, 9]),
        (4, 10, 1, [4]),
        (0, 1, 3, [0, 0, 0]),
        (2, 3, 7, [0, 0, 1, 2, 2, 2, 2]),
    ],
)
def test_window_indices_scalar(center, n_slices, window, expected):
    out = window_indices(center, n_slices, window)
    assert out.dtype == np.int64
    assert out.tolist() == expected


def test_window_indices_batch():
    out = window_indices(np.array([0, 5, 9]), 10, 3)
    assert out.shape == (3, 3)
    assert out.tolist() == [[0, 0, 1], [4, 5, 6], [8, 9, 9]]


@pytest.mark.parametrize("window", [1, 3, 15])
def test_window_indices_stay_in_range_and_centre(window):
    centers = np.arange(12)
    out = window_indices(centers, 12, window)
    assert out.min() == 0 and out.max() == 11
    np.testing.assert_array_equal(out[:, window // 2], centers)
    assert np.all(np.diff(out, axis=1) >= 0)


def test_extract_windows_single_centre():
    stack = ramp_stack()
    out = extract_windows(stack, 0, 3)
    assert out.shape == (3, 3, 4)
    assert out[:, 0, 0].tolist() == [0, 0, 1]


def test_extract_windows_batch_is_a_copy():
    stack = ramp_stack()
    out = extract_windows(stack, np.array([2, 9]), 5)
    assert out.shape == (2, 5, 3, 4)
    assert out[:, :, 0, 0].tolist() == [[0, 1, 2, 3, 4], [7, 8, 9, 9, 9]]
    out[...] = -1
    assert stack.min() == 0


def test_extract_windows_keeps_dtype():
    stack = (ramp_stack() > 4).astype(np.uint8)
    out = extract_windows(stack, 4, 3)
    assert out.dtype == np.uint8
    assert out[:, 0, 0].tolist() == [0, 0, 1]


@pytest.mark.parametrize("window", [1, 3, 15, 3.0, np.int64(5)])
def test_check_window_accepts_odd_positive(window):
    out = check_window(window)
    assert type(out) is int
    assert out == window


@pytest.mark.parametrize("window", [2, 14, 0, -1, -3, 1.5, 3.5, "3", True])
def test_check_window_rejects(window):
    with pytest.raises(InputError, match=f"SCM window must be an odd integer >= 1, got {window!r}"):
        check_window(window)


@pytest.mark.parametrize("window", [None, "abc"])
def test_check_window_rejects_non_numbers_with_input_error(window):
    with pytest.raises(InputError, match="SCM window must be an odd integer"):
        check_window(window)


@pytest.mark.parametrize("window", [2, 0])
def test_window_indices_checks_window(window):
    with pytest.raises(InputError, match="odd integer"):
        window_indices(3, 10, window)


def test_slice_window():
    stack = ramp_stack(n=20)
    out = SliceWindow(window=15)(stack, center=np.int64(3))
    assert out.shape == (15, 3, 4)
    assert out[:, 0, 0].tolist() == [0] * 5 + list(range(1, 11))


def test_slice_window_checks_window():
    with pytest.raises(InputError, match="got 4"):
        SliceWindow(window=4)


def test_slice_windowd_replaces_keys_only():
    stack = ramp_stack()
    data = {"image": stack, "prob": stack * 2, "label": stack[:1], "slice": 9}
    out = SliceWindowd(keys=["image", "prob"], window=3)(data)
    assert out["image"][:, 0, 0].tolist() == [8, 9, 9]
    assert out["prob"][:, 0, 0].tolist() == [16, 18, 18]
    assert out["label"] is data["label"]
    assert out["slice"] == 9
    assert data["image"] is stack


def test_slice_windowd_center_key_and_missing_keys():
    stack = ramp_stack()
    out = SliceWindowd(keys=["image", "absent"], window=5, center_key="z", allow_missing_keys=True)(
        {"image": stack, "z": 4}
    )
    assert out["image"][:, 0, 0].tolist() == [2, 3, 4, 5, 6]
    with pytest.raises(KeyError):
        SliceWindowd(keys=["absent"], window=3)({"image": stack, "slice": 0})


def test_scm_inputs_values_exactly_for_uint8_and_float_probabilities():
    from emseg_monai.transforms.windows import scm_inputs

    stored = np.array([[0, 127, 128, 255]], dtype=np.uint8)  # probabilities x 255
    np.testing.assert_array_equal(scm_inputs(stored, "prob"), stored.astype(np.float32) / 255)
    np.testing.assert_array_equal(scm_inputs(stored, "mask"), [[0, 0, 1, 1]])  # 0.5 x 255 = 127.5
    np.testing.assert_array_equal(scm_inputs(stored, "mask", threshold=0.25), [[0, 1, 1, 1]])
    floats = np.array([[0.0, 0.49, 0.5, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(scm_inputs(floats, "prob"), floats)
    np.testing.assert_array_equal(scm_inputs(floats, "mask"), [[0, 0, 1, 1]])
    assert scm_inputs(stored, "prob").dtype == scm_inputs(stored, "mask").dtype == np.float32
