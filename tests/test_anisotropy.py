"""Voxel size (read, given, unknown), MPP's Z steps at a Z/XY ratio, and MPP's check on hidden labeled slices."""

import inspect
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from emseg_monai import default_bundle_root
from emseg_monai.errors import InputError
from emseg_monai.io.voxels import (
    VoxelSize,
    downsample_for,
    parse_voxel_size,
    resolve_voxel_size,
    scm_window_for,
    voxel_size_nm,
)
from emseg_monai.training.mpp_check import STAGE1, candidate_settings, check_mpp
from emseg_monai.training.targets import run_mpp
from emseg_monai.transforms.mpp import bracket_majority, mpp, z_steps


def test_imagej_tiff_voxel_size_in_nm_and_um(tmp_path):
    stack = np.zeros((3, 8, 8), np.uint8)
    tifffile.imwrite(
        tmp_path / "nm.tif", stack, imagej=True, resolution=(1 / 4.6, 1 / 4.6), metadata={"spacing": 45, "unit": "nm"}
    )
    tifffile.imwrite(
        tmp_path / "um.tif",
        stack,
        imagej=True,
        resolution=(1 / 0.005, 1 / 0.005),
        metadata={"spacing": 0.04, "unit": "um"},
    )
    assert voxel_size_nm(tmp_path / "nm.tif") == pytest.approx((45.0, 4.6, 4.6))
    assert voxel_size_nm(tmp_path / "um.tif") == pytest.approx((40.0, 5.0, 5.0))


def test_imagej_tiff_calibrated_in_xy_only_is_isotropic(tmp_path):
    stack = np.zeros((4, 16, 16), np.uint8)
    path = tmp_path / "xy.tif"
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 0.005, 1 / 0.005), metadata={"unit": "micron"})
    assert voxel_size_nm(path) == pytest.approx((5.0, 5.0, 5.0))  # not 1 um sections


def test_ome_tiff_voxel_size(tmp_path):
    path = tmp_path / "s.ome.tif"
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.005, "PhysicalSizeY": 0.006, "PhysicalSizeZ": 0.05}
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), ome=True, metadata=meta)
    assert voxel_size_nm(path) == pytest.approx((50.0, 6.0, 5.0))
    tifffile.imwrite(tmp_path / "z.ome.tif", np.zeros((3, 8, 8), np.uint8), ome=True, metadata={"axes": "ZYX"})
    assert voxel_size_nm(tmp_path / "z.ome.tif") is None  # no physical size: unknown, not 1 um


def test_ome_zarr_voxel_size(tmp_path):
    store = tmp_path / "s.zarr"
    store.mkdir()
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    scale = [{"type": "scale", "scale": [40.0, 5.0, 5.0]}]
    attrs = {"multiscales": [{"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": scale}]}]}
    (store / ".zattrs").write_text(json.dumps(attrs))
    assert voxel_size_nm(store) == pytest.approx((40.0, 5.0, 5.0))
    (store / ".zattrs").write_text(
        json.dumps({"multiscales": [{"axes": ["z", "y", "x"], "datasets": [{"path": "0"}]}]})
    )
    assert voxel_size_nm(store) is None


def test_given_voxel_size_wins_and_unknown_warns_once(tmp_path, caplog):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((4, 8, 8), np.uint8), photometric="minisblack")
    with caplog.at_level(logging.WARNING, logger="emseg_monai.io.voxels"):
        unknown = resolve_voxel_size(path)
    assert unknown == VoxelSize(None, "unknown") and unknown.anisotropy == 1.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "plain.tif records no voxel size" in warnings[0].getMessage()
    given = resolve_voxel_size(path, "40,5,5")
    assert given.nm == (40.0, 5.0, 5.0) and given.source == "given" and given.anisotropy == 8.0
    assert "Z/XY = 8.00" in given.describe()


@pytest.mark.parametrize("text", ["0,5,5", "a,b,c", "5,5", "-1", "nan,5,5"])
def test_bad_voxel_size_is_one_line_error(text):
    with pytest.raises(InputError, match="voxel size"):
        parse_voxel_size(text)


def test_window_and_resolution_from_voxel_size():
    assert [scm_window_for(a) for a in (0.5, 1.0, 1.5, 2.0, 4.0, 8.0, 10.0, 30.0)] == [15, 15, 11, 9, 5, 3, 3, 3]
    assert [downsample_for(x) for x in (2.5, 4.6, 5.0, 7.0, 10.0, 20.0)] == [4.0, 2.0, 2.0, 1.0, 1.0, 1.0]


def test_z_steps_scale_erosions_and_drop_far_votes():
    assert z_steps(1.0) == {"erosions_per_step": 3, "vote_distances": [1, 2], "bracket_max_gap": 10.0}
    assert z_steps(1.5)["vote_distances"] == [1] and z_steps(1.5)["erosions_per_step"] == 4  # 3 * 1.22 = 3.67
    assert z_steps(4.0)["vote_distances"] == [] and z_steps(4.0)["erosions_per_step"] == 8  # 3 * 2.52
    assert z_steps(8.0, erosions_per_step=2)["erosions_per_step"] == 8  # 2 * 8 ** (2/3)
    assert z_steps(2.5)["vote_distances"] == [] and z_steps(8.0)["bracket_max_gap"] == 1.25
    with pytest.raises(InputError, match="anisotropy must be a positive number"):
        z_steps(0)


def _blobs(seed, shape=(13, 48, 48), continuous=True):
    """A (Z, Y, X) bool stack of discs: fixed along Z (continuous) or moved every slice (thick sections)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    out = np.zeros(shape, bool)
    centres = rng.integers(8, shape[1] - 8, size=(5, 2))
    for z in range(shape[0]):
        if not continuous:
            centres = rng.integers(8, shape[1] - 8, size=(5, 2))
        for cy, cx in centres:
            out[z] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 25
    return out


def test_anisotropy_equals_the_rescaled_isotropic_settings():
    truth = _blobs(0)
    noisy = truth & (np.arange(13) % 3 == 0)[:, None, None]  # stage 1 missed most slices: spreading matters
    labeled = [0, 4, 8, 12]
    kw = dict(min_size=4, spread_min_size=4)
    scaled = mpp(noisy, truth, labeled, erosions_per_step=2, anisotropy=4.0, **kw)
    by_hand = mpp(noisy, truth, labeled, erosions_per_step=5, vote_distances=(), bracket_reach=2.5, **kw)
    assert np.array_equal(scaled, by_hand)
    plain = dict(vote_distances=(), bracket_vote=False, erosions_per_step=2, **kw)  # the spread alone
    assert not np.array_equal(mpp(noisy, truth, labeled, anisotropy=4.0, **plain), mpp(noisy, truth, labeled, **plain))
    # at 8 no vote runs and the bracket is off for gaps of 4: only cleaning and spreading remain
    aniso = mpp(noisy, truth, labeled, erosions_per_step=1, anisotropy=8.0, **kw)
    no_votes = mpp(noisy, truth, labeled, erosions_per_step=4, vote_distances=(), bracket_vote=False, **kw)
    assert np.array_equal(aniso, no_votes)


def test_bracket_vote_skips_gaps_beyond_its_reach():
    mask = np.zeros((11, 4, 4), bool)
    mask[0] = mask[4] = mask[10] = True  # labeled slices 0, 4, 10 all on; unlabeled off
    near = bracket_majority(mask, np.array([0, 4, 10]), max_gap=4)
    assert near[1:4].all() and not near[5:10].any()  # gap 4 votes, gap 6 keeps its values
    assert bracket_majority(mask, np.array([0, 4, 10]))[5:10].all()


def test_check_keeps_mpp_where_z_is_continuous():
    truth = _blobs(2, continuous=True)
    stage1 = truth ^ (np.random.default_rng(3).random(truth.shape) < 0.08)
    labeled = np.arange(0, 13, 2)
    result = check_mpp(stage1, truth, labeled, candidate_settings({"min_size": 4, "spread_min_size": 4}))
    assert result["checked"] and result["held_out"] == [2, 4, 6, 8, 10]
    assert result["dice"]["mpp"] > result["dice"][STAGE1] + 0.005 and result["use_scm"]
    assert result["choice"] == "mpp" and "the SCM is used" in result["reason"]


def _moving_stack():
    """(truth, stage 1) where objects move every slice (Z votes and spreading mislead) and stage 1
    makes a small, slice-local error; checked with labeled slices 0, 2, ..., 12."""
    truth = _blobs(4, continuous=False)
    stage1 = truth.copy()
    stage1[:, :, :2] = ~stage1[:, :, :2]
    return truth, stage1


def test_check_falls_back_to_stage1_where_every_candidate_loses():
    truth, stage1 = _moving_stack()
    labeled = np.arange(0, 13, 2)
    # discs of about 80 px under a min_size of 100: cleaning alone loses them too
    large = candidate_settings({"min_size": 100, "spread_min_size": 4})
    result = check_mpp(stage1, truth, labeled, large)
    loss = max(v for k, v in result["dice"].items() if k != STAGE1) - result["dice"][STAGE1]
    assert loss < -0.002  # more than the default margin's -0.1 Dice below stage 1
    assert (
        not result["use_scm"]
        and "stage 1 alone" in result["reason"]
        and "below the margin of -0.10" in result["reason"]
    )
    tolerant = check_mpp(stage1, truth, labeled, large, loss - 1e-3)
    assert tolerant["use_scm"] and "the SCM is used" in tolerant["reason"]  # a negative margin tolerates the loss


def test_check_uses_the_scm_where_cleaning_only_ties_stage1():
    truth, stage1 = _moving_stack()  # MPP with its Z steps loses here; cleaning alone changes nothing
    result = check_mpp(stage1, truth, np.arange(0, 13, 2), candidate_settings({"min_size": 4, "spread_min_size": 4}))
    assert result["dice"]["mpp"] < result["dice"][STAGE1] == result["dice"]["mpp cleaning only"]
    assert result["use_scm"] and result["choice"] == "mpp cleaning only"  # the SCM learns stage 1's own masks


@pytest.mark.parametrize("margin", [2.0, -1.5, "high", True])
def test_run_mpp_names_a_bad_check_margin(tiny_data, tmp_path, margin):
    with pytest.raises(InputError, match="check_margin"):
        run_mpp(tiny_data / "label.tif", tiny_data / "label.tif", "every:3", tmp_path / "t.tif", True, margin)
    assert not (tmp_path / "t.tif").exists()


def test_check_needs_three_labeled_slices():
    truth = _blobs(5)
    result = check_mpp(truth, truth, np.array([0, 12]), candidate_settings({}))
    assert not result["checked"] and result["use_scm"] and "needs 3" in result["reason"]


def test_check_uses_the_scm_from_a_gain_of_the_margin_on():
    truth = _blobs(2, continuous=True)
    stage1 = truth ^ (np.random.default_rng(3).random(truth.shape) < 0.08)
    labeled = np.arange(0, 13, 2)
    gain = check_mpp(stage1, truth, labeled, candidate_settings({"min_size": 4, "spread_min_size": 4}), margin=1.0)
    best = max(v for k, v in gain["dice"].items() if k != STAGE1) - gain["dice"][STAGE1]
    assert not gain["use_scm"] and best > 0.002  # a gain of 1.0 (all of Dice) is never reached
    for margin, used in ((best - 1e-3, True), (best + 1e-3, False)):
        result = check_mpp(stage1, truth, labeled, candidate_settings({"min_size": 4, "spread_min_size": 4}), margin)
        assert result["use_scm"] is used, (margin, result["reason"])
    shown = round(100 * best, 2)  # a margin just above the gain that prints the same to 2 decimals
    assert 100 * best < shown + 0.004
    close = check_mpp(
        stage1, truth, labeled, candidate_settings({"min_size": 4, "spread_min_size": 4}), (shown + 0.004) / 100
    )
    assert not close["use_scm"]
    assert re.search(rf"MPP \{shown:+.2f}\d Dice against", close["reason"]), close["reason"]  # 3 decimals
    assert f"margin of {shown:+.2f}:" in close["reason"]
    config = yaml.safe_load((Path(default_bundle_root()) / "configs" / "mpp.yaml").read_text())
    assert config["check_margin"] == inspect.signature(check_mpp).parameters["margin"].default == -0.001
    assert inspect.signature(run_mpp).parameters["check_margin"].default == -0.001


TINY_STAGE = {"epochs": 1, "iterations_per_epoch": 2, "batch_size": 2, "crop_size": 32, "val_slices": "none"}
TINY_SHARED = {"features": [4, 4, 8, 8, 16, 4], "downsample": 1}
TINY_MPP = {"min_size": 4, "spread_min_size": 4, "erosions_per_step": 1}


def test_tiny_run_records_its_decision_and_finishes_its_stack(tiny_run, tiny_data):
    from emseg_monai.io import read_mask

    check = json.loads((tiny_run / "mpp_check.json").read_text())
    assert check["checked"] and check["held_out"] == [3, 6] and set(check["dice"]) == {STAGE1, *candidate_settings({})}
    meta = json.loads((tiny_run / "configs" / "metadata.json").read_text())
    record = meta["emseg_training"]
    voxels = record["voxels"]  # a synthetic stack without a recorded size: the image's estimate is kept
    assert {k: voxels[k] for k in ("voxel_size_nm", "source", "anisotropy")} == {
        "voxel_size_nm": None,
        "source": "unknown",
        "anisotropy": 1.0,
    }
    assert 1.0 <= voxels["estimated_anisotropy"] < 2.5  # read as isotropic
    from emseg_monai.training.bundle import config_defaults

    assert config_defaults(tiny_run / "configs" / "inference.yaml")["stage1_flips"] is False  # one pass
    assert record["mpp_check"]["use_scm"] is True and "overruled: use_scm true" in record["mpp_check"]["reason"]
    from emseg_monai.networks import resolve_precision

    assert record["precision"] == resolve_precision("auto", "cpu")  # the default, resolved for this machine
    assert "### What the run decided" in (tiny_run / "docs" / "README.md").read_text()
    finished, truth = read_mask(tiny_run / "finished_mask.tif"), read_mask(tiny_data / "label.tif")
    labeled = [0, 3, 6, 9]
    assert np.array_equal(finished[labeled], truth[labeled])  # the labels are kept exactly
    assert 0 <= meta["eval_metrics"]["finished_val_mean_dice"] <= 1


def test_a_run_whose_check_fails_segments_with_stage1_alone(tiny_data, tmp_path):
    from emseg_monai.io import read_mask
    from emseg_monai.training.bundle import config_defaults
    from emseg_monai.training.pipeline import train_pipeline

    run = tmp_path / "run"
    mpp_options = {**TINY_MPP, "check_margin": 1.0}  # no MPP can gain a whole Dice: the fallback must follow
    args = (tiny_data / "image.tif", tiny_data / "label.tif", "every:3", run)
    train_pipeline(*args, stage1=TINY_STAGE, scm=TINY_STAGE, mpp=mpp_options, shared=TINY_SHARED, device="cpu")
    assert config_defaults(run / "configs" / "inference.yaml")["use_scm"] is False
    assert np.array_equal(read_mask(run / "final_mask.tif"), read_mask(run / "stage1_mask.tif"))
    assert (run / "models" / "scm.pt").is_file()  # trained all the same: --use_scm true runs it
    assert "stage 1 alone" in (run / "docs" / "README.md").read_text()
    from emseg_monai.cli import main

    forced = tmp_path / "forced.tif"
    assert main(["--quiet", "segment", str(tiny_data / "image.tif"), str(forced), "--models", str(run), "--scm"]) == 0
    assert not np.array_equal(read_mask(forced), read_mask(run / "final_mask.tif"))  # the SCM ran and changed masks


def test_voxel_size_in_the_file_sets_window_and_mpp_steps(tiny_data, tmp_path):
    from emseg_monai.io import read_stack
    from emseg_monai.training.bundle import config_defaults
    from emseg_monai.training.pipeline import train_pipeline

    image = tmp_path / "sections.tif"
    tifffile.imwrite(
        image,
        read_stack(tiny_data / "image.tif"),
        imagej=True,
        resolution=(1 / 5, 1 / 5),
        metadata={"axes": "ZYX", "spacing": 40, "unit": "nm"},
    )
    run = tmp_path / "run"
    train_pipeline(
        image, tiny_data / "label.tif", "every:3", run, stage1=TINY_STAGE, scm=TINY_STAGE, mpp=TINY_MPP,
        shared=TINY_SHARED, device="cpu",
    )  # fmt: skip
    inference = config_defaults(run / "configs" / "inference.yaml")
    assert inference["scm_window"] == 3  # 15 slices of 5 nm ~ 3 of 40
    assert inference["smoothing"] == 1  # 1.5 sections of 40 nm: too far along Z
    assert inference["smoothing_z"] is None  # the synthetic sections line up: sigma 1 along Z as well
    assert inference["trained_voxel_size"] == [40.0, 5.0, 5.0]  # later stacks are matched to it
    assert config_defaults(run / "configs" / "mpp.yaml")["voxel_size"] == "40,5,5"
    check = json.loads((run / "mpp_check.json").read_text())
    assert check["z_steps"] == {"erosions_per_step": 4, "vote_distances": [], "bracket_max_gap": 1.25}
    meta = json.loads((run / "configs" / "metadata.json").read_text())
    assert (
        meta["emseg_training"]["voxels"]["anisotropy"] == 8.0 and meta["emseg_training"]["voxels"]["source"] == "file"
    )
    assert 0 <= meta["emseg_training"]["section_shift_px"] < 6  # measured, and under the limit at downsample 2
    assert "smoothed by 1.0 along Z as well" in (run / "docs" / "README.md").read_text()
    assert inference["stage1_flips"] is True  # thick sections: stage 1's flips feed the SCM
    assert "stage 1 averages its 4 flips" in (run / "docs" / "README.md").read_text()
    # ... at segmentation only: MPP and the SCM learned from one pass (an SCM trained on flip-averaged
    # stage 1 measured no better, docs/results.md), so the run's stage1_prob.tif is the one-pass output
    from emseg_monai.workflows import segment_file

    written = read_stack(run / "stage1_prob.tif")
    for flips in (False, True):
        out = tmp_path / f"stage1_flips_{flips}.tif"
        segment_file(image, out, run, use_scm=False, stage1_flips=flips, save_stage1=True, match_voxel_size=False)
        same = np.array_equal(read_stack(tmp_path / f"stage1_flips_{flips}_stage1_prob.tif"), written)
        assert same is not flips
    # fine-tuning with more labels keeps the run's flips for segmentation and learns from one pass again
    from emseg_monai.cli import main
    from tests.conftest import TRAIN_ARGS

    argv = ["train", str(image), str(tiny_data / "label.tif"), "--output", str(run), *TRAIN_ARGS]
    assert main(["--quiet", *argv, "--labeled", "every:2", "--resume"]) == 0
    assert config_defaults(run / "configs" / "train.yaml")["labeled_slices"] == "every:2"  # it fine-tuned
    assert config_defaults(run / "configs" / "inference.yaml")["stage1_flips"] is True
    written = read_stack(run / "stage1_prob.tif")
    for flips in (False, True):
        out = tmp_path / f"tuned_flips_{flips}.tif"
        segment_file(image, out, run, use_scm=False, stage1_flips=flips, save_stage1=True, match_voxel_size=False)
        assert np.array_equal(read_stack(tmp_path / f"tuned_flips_{flips}_stage1_prob.tif"), written) is not flips


def test_mpp_sizes_follow_the_pixel_size_unless_given():
    from pathlib import Path

    from emseg_monai import default_bundle_root
    from emseg_monai.training.bundle import config_defaults
    from emseg_monai.training.pipeline import _mpp_sizes

    root = config_defaults(Path(default_bundle_root()) / "configs" / "mpp.yaml")
    assert _mpp_sizes(VoxelSize((50.0, 10.0, 10.0), "given"), root, {}, False) == {
        "min_size": 75,
        "spread_min_size": 112,
    }
    assert _mpp_sizes(VoxelSize((50.0, 10.0, 10.0), "given"), root, {"min_size": 9}, False) == {"spread_min_size": 112}
    assert _mpp_sizes(VoxelSize((5.0, 5.0, 5.0), "file"), root, {}, False) == {"min_size": 300, "spread_min_size": 450}
    assert _mpp_sizes(VoxelSize(None, "unknown"), root, {}, False) == {}
    assert _mpp_sizes(VoxelSize((50.0, 10.0, 10.0), "given"), root, {}, True) == {}  # fine-tuning keeps the run's


def test_bracket_gap_is_measured_between_the_two_nearest_labeled_slices():
    # labeled 0, 5, 10; slice 7 is wrong alone, its bracket (5, 10) is 5 apart: corrected at max_gap 5
    mask = np.zeros((11, 1, 1), bool)
    mask[[5, 10]] = True
    mask[7] = False
    out = bracket_majority(mask, [0, 5, 10], max_gap=5)
    assert out[6:10, 0, 0].tolist() == [True, True, True, True]
    assert bracket_majority(mask, [0, 5, 10], max_gap=4)[7, 0, 0] == False  # noqa: E712  (gap 5 > 4: kept)


def test_no_erosions_asked_means_none_at_any_ratio():
    assert z_steps(1.0, erosions_per_step=0)["erosions_per_step"] == 0
    assert z_steps(8.0, erosions_per_step=0)["erosions_per_step"] == 0


def test_spreading_reaches_slice_0_below_the_first_labeled_slice():
    from emseg_monai.transforms.mpp import erode_2d, spread_labels

    labels = np.zeros((6, 12, 12), bool)
    labels[3, 2:10, 2:10] = True
    out = spread_labels(np.zeros_like(labels), labels, np.array([3]), erosions_per_step=0, min_size=1)
    assert out[:, 6, 6].tolist() == [True, True, True, False, True, True]  # 3 down to slice 0, 2 up (not slice 3)
    square = np.zeros((1, 9, 9), bool)
    square[0, 2:7, 2:7] = True
    np.testing.assert_array_equal(erode_2d(square, 0), square)  # 0 erosions: unchanged, not "until empty"
