import numpy as np
import pytest

from emseg_monai.errors import InputError
from emseg_monai.transforms import MPP, MPPd, bracket_majority, mpp, remove_small_objects_2d, spread_labels, z_majority


def disk_stack(n=9, size=32, radius=8):
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius**2
    return np.repeat(disk[None], n, axis=0)


def test_remove_small_objects_is_per_slice_and_keeps_input():
    mask = np.zeros((2, 10, 10), bool)
    mask[0, :4, :4] = True  # 16 px
    mask[0, 8, 8] = True  # 1 px
    mask[1, 8, 8] = True  # 1 px in the next slice, touching in Z only
    before = mask.copy()
    out = remove_small_objects_2d(mask, 2)
    assert out.sum() == 16 and not out[1].any()
    np.testing.assert_array_equal(mask, before)


def test_z_majority_removes_single_slice_blob_and_fills_single_slice_hole():
    stack = disk_stack()
    stack[4] = False  # a hole of one slice
    stack[2, :4, :4] = True  # a blob of one slice
    out = z_majority(stack, 1)
    np.testing.assert_array_equal(out, disk_stack())


def test_bracket_majority_uses_labeled_neighbours():
    stack = np.zeros((5, 4, 4), bool)
    stack[0] = stack[4] = True
    assert bracket_majority(stack, np.array([0, 4]))[2].all()  # both bracketing slices vote yes
    stack[4] = False
    assert not bracket_majority(stack, np.array([0, 4]))[1:4].any()  # one yes of three
    ends = np.zeros((8, 2, 2), bool)
    ends[[2, 5]] = True
    ends[0] = ends[7] = ends[3] = False
    out = bracket_majority(ends, np.array([2, 5]))
    assert out[3].all() and out[4].all()  # between the labeled slices: both vote yes
    np.testing.assert_array_equal(out[[0, 1, 6, 7]], ends[[0, 1, 6, 7]])  # outside: unchanged


def test_spread_labels_erodes_more_with_distance_and_stops_at_next_labeled():
    labels = disk_stack(n=11, radius=10)
    empty = np.zeros_like(labels)
    out = spread_labels(empty, labels, np.array([0, 10]), erosions_per_step=1, min_size=1)
    areas = out.sum(axis=(1, 2))
    assert areas[0] == 0 and areas[10] == 0  # labeled slices are not written by spreading
    assert areas[1] > areas[2] > areas[3] > 0
    np.testing.assert_array_equal(areas[1:5], areas[9:5:-1])


def test_mpp_on_continuous_stack_changes_nothing():
    stack = disk_stack()
    out = mpp(stack, stack, [0, 4, 8], min_size=10, spread_min_size=10, erosions_per_step=1)
    np.testing.assert_array_equal(out, stack)


def test_mpp_cleans_noise_and_keeps_labeled_slices_and_inputs():
    truth = disk_stack(n=11)
    rng = np.random.default_rng(0)
    noisy = truth.copy()
    noisy[3] = False  # a missed slice
    noisy[6, :5, :5] = True  # a small false blob
    noisy[7] ^= rng.random(noisy[7].shape) < 0.02  # salt noise
    labels = truth.copy()
    labels[5, :, :3] = True  # labeled slice's ground truth differs from the prediction: it must win
    before_mask, before_labels = noisy.copy(), labels.copy()
    out = mpp(noisy, labels, [0, 5, 10], min_size=30, spread_min_size=30, erosions_per_step=1)
    np.testing.assert_array_equal(out[5], labels[5])
    assert np.logical_xor(out, truth)[[1, 2, 3, 4, 6, 7, 8, 9]].sum() < np.logical_xor(noisy, truth).sum() / 4
    np.testing.assert_array_equal(noisy, before_mask)
    np.testing.assert_array_equal(labels, before_labels)


def test_mpp_without_labeled_slices_runs_votes_only():
    stack = disk_stack()
    stack[4] = False
    out = mpp(stack, None, [], min_size=10)
    assert out[4].sum() == stack[3].sum()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mask": np.zeros((4, 4), bool)}, "Z, Y, X"),
        ({"labeled": [9]}, "outside"),
        ({"labels": None}, "needs the label stack"),
        ({"labels": np.zeros((3, 8, 8), bool)}, "differs"),
    ],
)
def test_mpp_bad_input(kwargs, match):
    args = {"mask": np.zeros((4, 8, 8), bool), "labels": np.zeros((4, 8, 8), bool), "labeled": [0]}
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        mpp(args["mask"], args["labels"], args["labeled"])


def test_mpp_transforms_channel_first_and_dict():
    stack = disk_stack().astype(np.uint8)
    out = MPP(labeled_slices=[0, 8], min_size=10, spread_min_size=10, erosions_per_step=1)(stack[None], stack)
    assert out.shape == (1, *stack.shape) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], stack)
    d = MPPd(keys="pred", label_key="label", labeled_slices=[0, 8], min_size=10, spread_min_size=10)(
        {"pred": stack.astype(bool), "label": stack}
    )
    assert d["pred"].dtype == bool and d["pred"].shape == stack.shape


def test_mpp_defaults_are_the_configs():
    """``mpp()`` called without options does what ``mpp.yaml`` does: the two sets of defaults agree."""
    import inspect
    from pathlib import Path

    from emseg_monai import default_bundle_root
    from emseg_monai.training.bundle import config_defaults

    config = config_defaults(Path(default_bundle_root()) / "configs" / "mpp.yaml")
    signature = inspect.signature(mpp).parameters
    keys = ("min_size", "spread_min_size", "erosions_per_step", "vote_distances", "bracket_vote")
    keys += ("vote_reach", "bracket_reach")
    for key in keys:
        default = signature[key].default
        assert (list(default) if isinstance(default, tuple) else default) == config[key], key


@pytest.mark.parametrize("labeled", [[-1], [0, -2], [4]])
def test_mpp_refuses_labeled_slices_outside_the_stack_on_both_ends(labeled):
    mask = np.zeros((4, 8, 8), bool)
    with pytest.raises(InputError, match="outside the stack of 4 slices"):
        mpp(mask, mask, labeled)
