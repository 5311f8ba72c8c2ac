"""Tests for emseg_monai.data.synthetic: the EM-like stack generator."""

from __future__ import annotations

import numpy as np
import pytest

from emseg_monai.data.synthetic import SyntheticConfig, make_synthetic_stack
from emseg_monai.errors import InputError

SHAPE = (40, 128, 128)


@pytest.fixture(scope="module")
def default_stack():
    return make_synthetic_stack(SHAPE, seed=3)


def adjacent_dice(mask: np.ndarray) -> np.ndarray:
    a, b = mask[:-1], mask[1:]
    inter = (a & b).sum(axis=(1, 2))
    total = a.sum(axis=(1, 2)) + b.sum(axis=(1, 2))
    return 2 * inter[total > 0] / total[total > 0]


def test_shapes_and_dtypes(default_stack):
    image, label = default_stack
    assert image.shape == label.shape == SHAPE
    assert image.dtype == np.uint8
    assert label.dtype == np.uint8


def test_label_values_are_0_255(default_stack):
    _, label = default_stack
    assert set(np.unique(label).tolist()) == {0, 255}


def test_foreground_fraction_is_plausible(default_stack):
    _, label = default_stack
    assert 0.01 < (label > 0).mean() < 0.20


def test_labels_continue_along_z(default_stack):
    _, label = default_stack
    dice = adjacent_dice(label > 0)
    assert dice.size >= SHAPE[0] // 2
    assert dice.mean() > 0.6


def test_mitochondria_are_darker_than_background(default_stack):
    image, label = default_stack
    assert image[label > 0].mean() + 40 < image[label == 0].mean()


def test_image_uses_the_intensity_range(default_stack):
    image, _ = default_stack
    assert image.std() > 10
    assert len(np.unique(image)) > 100


def test_same_seed_same_output():
    a_image, a_label = make_synthetic_stack((10, 32, 40), seed=7)
    b_image, b_label = make_synthetic_stack((10, 32, 40), seed=7)
    np.testing.assert_array_equal(a_image, b_image)
    np.testing.assert_array_equal(a_label, b_label)


def test_different_seeds_differ():
    a_image, a_label = make_synthetic_stack((10, 32, 40), seed=1)
    b_image, b_label = make_synthetic_stack((10, 32, 40), seed=2)
    assert not np.array_equal(a_image, b_image)
    assert not np.array_equal(a_label, b_label)


def test_non_cubic_small_shape():
    image, label = make_synthetic_stack((8, 9, 23), seed=0)
    assert image.shape == label.shape == (8, 9, 23)


def test_config_without_noise_or_bad_slices_is_cleaner():
    quiet = SyntheticConfig(noise=0.0, bad_slice_fraction=0.0, decoys_per_slice=0.0)
    noisy_image, label = make_synthetic_stack((12, 48, 48), seed=5)
    quiet_image, quiet_label = make_synthetic_stack((12, 48, 48), seed=5, config=quiet)
    background = label == 0
    assert quiet_image[background].std() < noisy_image[background].std()


def test_density_controls_foreground():
    sparse = make_synthetic_stack((16, 64, 64), seed=0, config=SyntheticConfig(mito_density=1e-6))[1]
    dense = make_synthetic_stack((16, 64, 64), seed=0, config=SyntheticConfig(mito_density=4e-4))[1]
    assert (dense > 0).mean() > 2 * (sparse > 0).mean()


@pytest.mark.parametrize("shape", [(7, 32, 32), (16, 4, 32), (16, 32, 0), (32, 32), (8, 8, 8, 8)])
def test_bad_shape_raises(shape):
    with pytest.raises(InputError, match=r"synthetic stack shape must be 3 sizes, each >= 8, got"):
        make_synthetic_stack(shape)
