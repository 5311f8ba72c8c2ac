"""Shifts between neighbouring sections (io.alignment), by phase correlation."""

import numpy as np
from scipy.ndimage import gaussian_filter

from emseg_monai.io.alignment import section_shifts, upper_shift_quartile


def _texture(shape=(6, 96, 96), seed=0):
    """(Z, Y, X) float64 random texture, smooth over a few pixels, every slice the same."""
    plane = gaussian_filter(np.random.default_rng(seed).normal(size=shape[1:]), 2.0, mode="wrap")
    return np.repeat(plane[None], shape[0], axis=0)


def test_known_shifts_are_measured_to_the_pixel():
    stack = _texture()
    moves = [(0, 0), (3, 4), (3, 4), (-5, 7), (-5, 7), (1, 1)]  # (dy, dx) of each slice, wrapped around
    shifted = np.stack([np.roll(s, m, axis=(0, 1)) for s, m in zip(stack, moves)])
    expected = [np.hypot(a[0] - b[0], a[1] - b[1]) for a, b in zip(moves, moves[1:])]
    np.testing.assert_allclose(section_shifts(shifted), expected)
    assert upper_shift_quartile(shifted) == np.percentile(expected, 75) > 6
    np.testing.assert_array_equal(section_shifts(stack), np.zeros(5))  # aligned: 0
    assert upper_shift_quartile(stack) == 0.0


def test_short_or_flat_stacks_measure_nothing_and_long_ones_are_sampled():
    assert section_shifts(_texture((1, 32, 32))).size == 0 and upper_shift_quartile(_texture((1, 32, 32))) == 0.0
    flat = _texture((3, 32, 32))
    flat[1] = 7.0  # no texture: both of its pairs are left out
    assert section_shifts(flat).size == 0
    assert section_shifts(_texture((30, 32, 32)), pairs=4).size == 4  # only 4 pairs read
    big = _texture((3, 700, 600))
    assert section_shifts(big, crop=128).size == 2  # central crops of a larger slice
