"""Property-based tests (hypothesis) of the transforms: shapes, dtypes, binary masks, inputs untouched."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from emseg_monai.transforms import RandPiecewiseAffined, extract_windows, mpp, remove_small_objects_2d

masks = arrays(bool, st.tuples(st.integers(1, 6), st.integers(4, 12), st.integers(4, 12)))


@settings(max_examples=40, deadline=None)
@given(mask=masks, data=st.data())
def test_mpp_keeps_shape_binary_and_inputs(mask, data):
    labels = data.draw(arrays(bool, mask.shape))
    labeled = data.draw(st.lists(st.integers(0, mask.shape[0] - 1), max_size=3, unique=True))
    before = mask.copy(), labels.copy()
    out = mpp(mask, labels, labeled, min_size=3, spread_min_size=3, erosions_per_step=1)
    assert out.shape == mask.shape and out.dtype == bool
    np.testing.assert_array_equal(out[sorted(labeled)], labels[sorted(labeled)])
    np.testing.assert_array_equal(mask, before[0])
    np.testing.assert_array_equal(labels, before[1])


@settings(max_examples=40, deadline=None)
@given(mask=arrays(bool, st.tuples(st.integers(4, 12), st.integers(4, 12))), n=st.integers(1, 6))
def test_mpp_on_a_stack_of_identical_large_objects_changes_nothing(mask, n):
    clean = remove_small_objects_2d(mask[None], 3)[0]
    stack = np.repeat(clean[None], n, axis=0)
    out = mpp(stack, stack, list(range(0, n, 2)), min_size=3, spread_min_size=3, erosions_per_step=1)
    np.testing.assert_array_equal(out, stack)


@settings(max_examples=40, deadline=None)
@given(
    stack=arrays(np.float32, st.tuples(st.integers(1, 6), st.just(3), st.just(3))), window=st.sampled_from([1, 3, 5])
)
def test_windows_shape_and_centre(stack, window):
    out = extract_windows(stack, np.arange(stack.shape[0]), window)
    assert out.shape == (stack.shape[0], window, 3, 3)
    np.testing.assert_array_equal(out[:, window // 2], stack)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.tuples(st.integers(8, 24), st.integers(8, 24)))
def test_piecewise_affine_dict_keeps_mask_binary_and_dtypes(seed, size):
    rng = np.random.default_rng(seed)
    image = rng.random((1, *size), dtype=np.float32)
    label = (rng.random((1, *size)) > 0.5).astype(np.float32)
    transform = RandPiecewiseAffined(["image", "label"], prob=1.0, mode=["bilinear", "nearest"]).set_random_state(seed)
    kept = image.copy(), label.copy()
    out = transform({"image": image, "label": label})
    np.testing.assert_array_equal(image, kept[0])  # the input arrays are never modified
    np.testing.assert_array_equal(label, kept[1])
    assert out["image"].shape == image.shape and out["image"].dtype == np.float32
    assert set(np.unique(np.asarray(out["label"]))) <= {0.0, 1.0}
