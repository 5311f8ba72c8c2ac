"""The Z/XY ratio read from the image where the file records no voxel size (io.anisotropy)."""

import logging

import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter

from emseg_monai.errors import InputError
from emseg_monai.inference.voxel_match import scm_suits
from emseg_monai.io.anisotropy import CLEARLY_ANISOTROPIC, estimate_anisotropy, image_anisotropy
from emseg_monai.io.voxels import VoxelSize, resolve_voxel_size
from emseg_monai.training.pipeline import _smoothing_default, _voxel_defaults
from emseg_monai.workflows import inference_config, thick_for_scm


@pytest.fixture(scope="module")
def field():
    """An isotropic random texture (Z, Y, X) = (72, 64, 64), float64."""
    return gaussian_filter(np.random.default_rng(0).normal(size=(72, 64, 64)), 3.0)


def as_uint8(volume):
    low, high = volume.min(), volume.max()
    return np.round(255 * (volume - low) / (high - low)).astype(np.uint8)


@pytest.mark.parametrize("k", [1, 2, 4, 6])
def test_every_kth_slice_of_an_isotropic_texture_reads_as_k(field, k):
    assert estimate_anisotropy(field[::k]) == pytest.approx(k, rel=0.25, abs=0.2)


def test_brightness_and_contrast_changes_between_sections_do_not_count(field):
    thick = field[::4].copy()
    plain = estimate_anisotropy(thick)
    thick *= np.linspace(0.5, 2.0, len(thick))[:, None, None]  # contrast drifts from section to section
    thick += np.linspace(-3, 3, len(thick))[:, None, None]  # and brightness
    assert estimate_anisotropy(thick) == pytest.approx(plain, rel=1e-6)


def test_stacks_that_cannot_tell_give_none_and_fine_sections_give_one(field):
    assert estimate_anisotropy(field[:1]) is None  # one slice
    assert estimate_anisotropy(field[:, :12, :12]) is None  # slices too small to compare distances
    assert estimate_anisotropy(np.zeros((5, 64, 64))) is None  # flat
    smooth_z = gaussian_filter(field, (6, 0, 0))  # neighbouring slices nearly equal: Z finer than XY
    assert estimate_anisotropy(smooth_z) == 1.0
    noise = np.random.default_rng(1).normal(size=(4, 64, 64))  # nothing correlates: capped at the largest lag
    assert estimate_anisotropy(noise) <= 16.0


def test_a_tiff_without_voxel_size_uses_the_estimate_when_clearly_anisotropic(field, tmp_path, caplog):
    thick, thin = tmp_path / "thick.tif", tmp_path / "thin.tif"
    tifffile.imwrite(thick, as_uint8(field[::6]), photometric="minisblack")
    tifffile.imwrite(thin, as_uint8(field), photometric="minisblack")
    with caplog.at_level(logging.WARNING, logger="emseg_monai.io.voxels"):
        voxels = resolve_voxel_size(thick)
    assert voxels.source == "image" and voxels.nm is None and voxels.xy_nm is None
    assert voxels.anisotropy == voxels.estimate and 4.5 <= voxels.anisotropy <= 7.5
    assert "Z/XY = " in voxels.describe() and "estimated from the image" in voxels.describe()
    message = caplog.records[-1].getMessage()
    assert "thick.tif records no voxel size" in message and "--voxel-size" in message
    assert voxels.as_record()["estimated_anisotropy"] == pytest.approx(voxels.estimate)
    isotropic = resolve_voxel_size(thin)
    assert isotropic.source == "unknown" and isotropic.anisotropy == 1.0 and isotropic.estimate < CLEARLY_ANISOTROPIC
    assert "the image agrees" in caplog.records[-1].getMessage()
    # a given size, or one the file records, wins over the image
    assert resolve_voxel_size(thick, "5,5,5").anisotropy == 1.0
    recorded = tmp_path / "recorded.tif"
    tifffile.imwrite(
        recorded, as_uint8(field[::6]), imagej=True, resolution=(0.2, 0.2), metadata={"spacing": 5.0, "unit": "nm"}
    )
    assert resolve_voxel_size(recorded).source == "file" and resolve_voxel_size(recorded).anisotropy == 1.0


def test_the_estimate_picks_the_scm_window_but_not_the_resolution():
    assert _voxel_defaults(VoxelSize(None, "image", 8.0), {}, own_recipe=False) == {"scm_window": 3}
    assert _voxel_defaults(VoxelSize(None, "image", 8.0), {"scm_window": 5}, own_recipe=False) == {}
    assert _voxel_defaults(VoxelSize(None, "unknown", 1.4), {}, own_recipe=False) == {}
    assert _voxel_defaults(VoxelSize(None, "image", 8.0), {}, own_recipe=True) == {}


def test_segmenting_a_thick_stack_of_unknown_voxel_size_skips_the_scm(field, tmp_path, caplog):
    thick, thin = tmp_path / "thick.tif", tmp_path / "thin.tif"
    tifffile.imwrite(thick, as_uint8(field[::6]), photometric="minisblack")
    tifffile.imwrite(thin, as_uint8(field), photometric="minisblack")
    trained = [5.0, 5.0, 5.0]
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        assert scm_suits(True, thick, None, trained, True, 15) is False
    message = caplog.records[-1].getMessage()
    assert "thick.tif records no voxel size" in message and "stage 1 alone" in message and "--no-voxel-match" in message
    assert scm_suits(True, thin, None, trained, True, 15) is True  # looks isotropic, as the training stack
    assert scm_suits(True, thick, "5,5,5", trained, True, 15) is True  # a given size wins
    assert scm_suits(True, thick, None, trained, False, 15) is True  # --no-voxel-match
    assert scm_suits(True, thick, None, None, True, 15) is True  # training voxel size unknown: nothing to compare
    assert scm_suits(True, thick, None, [40.0, 5.0, 5.0], True, 3) is True  # weights trained on thick sections
    assert scm_suits(False, thin, None, trained, True, 15) is False


def test_an_array_of_unknown_voxel_size_is_checked_against_the_bundle(field, tmp_path):
    """The napari widget's path: no file, only the layer's data and a bundle."""
    shipped = inference_config()  # 5 nm isotropic, window 15
    reason = thick_for_scm(as_uint8(field[::6]), shipped)
    assert reason is not None and "sections about" in reason and "15 slices" in reason
    estimate = float(reason.split("pixels ")[1].split(" apart")[0])
    assert 4.5 <= estimate <= 7.5
    assert thick_for_scm(as_uint8(field), shipped) is None  # looks isotropic, as the training stack
    assert thick_for_scm(np.zeros((6, 64, 64), np.uint8), shipped) is None  # flat: the image cannot tell
    shipped["trained_voxel_size"] = None  # a run on a stack of unknown voxel size ...
    assert thick_for_scm(as_uint8(field[::6]), shipped) is None  # ... written before the ratio was kept
    shipped["trained_z_ratio"] = 1.0  # ... that assumed isotropic voxels
    assert "sections about" in thick_for_scm(as_uint8(field[::6]), shipped)
    shipped["trained_z_ratio"] = 6.0  # ... that estimated thick sections
    assert thick_for_scm(as_uint8(field[::6]), shipped) is None
    with pytest.raises(InputError, match="nowhere"):
        inference_config(tmp_path / "nowhere")


def test_unreadable_or_missing_files_give_no_estimate(tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    assert image_anisotropy(broken) is None
    assert image_anisotropy(tmp_path / "missing.tif") is None


def test_a_zarr_store_without_scale_is_estimated_too(field, tmp_path):
    import zarr

    store = tmp_path / "thick.zarr"
    array = zarr.create_array(str(store), shape=field[::6].shape, chunks=(4, 32, 32), dtype="uint8")
    array[:] = as_uint8(field[::6])
    assert 4.5 <= image_anisotropy(store) <= 7.5
    assert resolve_voxel_size(store).source == "image"


def test_the_run_readme_tells_the_estimate_it_used():
    from emseg_monai.training.bundle import _decision_text

    estimated = {"voxels": {"voxel_size_nm": None, "source": "image", "anisotropy": 8.0, "estimated_anisotropy": 7.96}}
    assert "Z/XY ratio 8.0 as estimated from the image" in _decision_text(estimated, {"use_scm": False})
    assert "`trained_z_ratio: 8.0`" in _decision_text(estimated, {"use_scm": False, "trained_z_ratio": 8.0})
    assert "trained_z_ratio" not in _decision_text(estimated, {"use_scm": False})  # folders before 0.8.12
    unknown = {"voxels": {"voxel_size_nm": None, "source": "unknown", "anisotropy": 1.0, "estimated_anisotropy": 1.1}}
    assert "isotropic voxels assumed" in _decision_text(unknown, {"use_scm": True})
    rough = {"voxels": {"voxel_size_nm": [40, 5, 5], "source": "file", "anisotropy": 8.0}, "section_shift_px": 21.5}
    told = _decision_text(rough, {"use_scm": True, "smoothing": 1.0, "smoothing_z": 0.0})
    assert (
        "a quarter of the neighbouring sections shifted by 21.5 px or more" in told
        and "smoothed by 1.0 in Y and X only" in told
    )


def test_thick_sections_narrow_the_smoothing_unless_fine_tuning_or_unknown(field, tmp_path):
    aligned = tmp_path / "aligned.tif"
    tifffile.imwrite(aligned, as_uint8(field[:18:2]))  # neighbours alike enough to be matched
    forty = VoxelSize((40.0, 5.0, 5.0), "file", 8.0)
    found = _smoothing_default(forty, False, aligned, 2)
    assert found["smoothing"] == 1.0 and "smoothing_z" not in found and found["section_shift_px"] < 3
    assert _smoothing_default(VoxelSize(None, "image", 2.0), False, aligned, 2)["smoothing"] == 1.0
    assert _smoothing_default(VoxelSize(None, "image", 1.9), False, aligned, 2) == {}
    assert _smoothing_default(VoxelSize(None, "unknown", 8.0), False, aligned, 2) == {}
    assert _smoothing_default(forty, True, aligned, 2) == {}


def test_thick_sections_flip_stage_1_unless_fine_tuning_or_unknown():
    from emseg_monai.training.pipeline import _flips_default

    assert _flips_default(VoxelSize((40.0, 5.0, 5.0), "file", 8.0), False) == {"stage1_flips": True}
    assert _flips_default(VoxelSize(None, "image", 2.0), False) == {"stage1_flips": True}
    assert _flips_default(VoxelSize(None, "image", 1.9), False) == {}  # about isotropic: one pass
    assert _flips_default(VoxelSize((5.0, 5.0, 5.0), "file", 1.0), False) == {}
    assert _flips_default(VoxelSize(None, "unknown", 8.0), False) == {}
    assert _flips_default(VoxelSize((40.0, 5.0, 5.0), "file", 8.0), True) == {}  # fine-tuning keeps its own


def test_sections_that_do_not_line_up_get_no_smoothing_along_z(field, tmp_path, caplog):
    sections = as_uint8(field[:18:2])  # (9, 64, 64), aligned as above
    moves = [(0, 0), (5, 5), (0, 0), (-5, 4), (0, 0), (5, 5), (0, 0), (-5, 4), (0, 0)]  # 7 px or more apart
    rough = tmp_path / "rough.tif"
    tifffile.imwrite(rough, np.stack([np.roll(s, m, axis=(0, 1)) for s, m in zip(sections, moves)]))
    forty = VoxelSize((40.0, 5.0, 5.0), "file", 8.0)
    with caplog.at_level(logging.INFO, logger="emseg_monai.training.pipeline"):
        found = _smoothing_default(forty, False, rough, 2)
    assert found["smoothing_z"] == 0.0 and found["smoothing"] == 1.0 and found["section_shift_px"] > 6
    assert "in Y and X only" in caplog.text
    # the shifts are judged at the SCM's resolution: at 1/4 of it the quartile (7.1 px) is under 3 px
    assert _smoothing_default(forty, False, rough, 4).get("smoothing_z") is None
