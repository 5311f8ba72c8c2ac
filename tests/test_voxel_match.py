"""Inputs of another voxel size: resized to the trained pixel size, no SCM on much thicker sections."""

import logging

import numpy as np
import pytest
import tifffile
from monai.bundle import ConfigParser

from emseg_monai import default_bundle_root
from emseg_monai.cli import main
from emseg_monai.data import make_synthetic_stack
from emseg_monai.errors import InputError
from emseg_monai.inference.voxel_match import input_voxel_nm, matched_downsample, scm_suits
from emseg_monai.io import read_mask
from emseg_monai.training.bundle import config_defaults
from tests.conftest import shifted_stack


def calibrated(path, xy_nm, z_nm=5.0, shape=(8, 48, 64)):
    """A uint8 ImageJ TIFF recording its voxel size in nm, as microscope exports do."""
    image, _ = make_synthetic_stack(shape, seed=0)
    tifffile.imwrite(
        path,
        image,
        imagej=True,
        resolution=(1 / xy_nm, 1 / xy_nm),
        metadata={"axes": "ZYX", "spacing": z_nm, "unit": "nm"},
    )
    return path


EPFL = [5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    ("voxel_size", "trained", "match", "expected"),
    [
        ("40,8,8", EPFL, True, 1.25),  # coarser pixels: less downsampling
        ("5,4,4", EPFL, True, 2.5),  # finer pixels: more
        ("5,5.1,5.1", EPFL, True, 2.0),  # within 5 %: as trained
        (None, EPFL, True, 2.0),  # unknown input voxel size
        ("5,8,8", None, True, 2.0),  # unknown training voxel size
        ("5,8,8", EPFL, "false", 2.0),  # matching off (text, as from a bundle command line)
    ],
)
def test_matched_downsample(voxel_size, trained, match, expected):
    assert matched_downsample(2, None, voxel_size, trained, match) == pytest.approx(expected)


def test_pixels_coarser_than_the_network_ones_run_at_full_resolution_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.pixels"):
        assert matched_downsample(2, None, "30,16,16", EPFL) == 1.0
    assert "16 nm pixels are coarser than the 10 nm" in caplog.text


@pytest.mark.parametrize(
    ("voxel_size", "trained", "use_scm", "match", "expected"),
    [
        ("5,5,5", EPFL, True, True, True),  # as trained
        ("9,5,5", EPFL, True, True, True),  # less than twice as thick: kept
        ("10,5,5", EPFL, True, True, False),  # twice as thick: stage 1 alone
        ("40,5,5", [40, 5, 5], True, True, True),  # a thick-section run on thick sections
        ("5,5,5", [40, 5, 5], True, True, True),  # thinner sections than trained: kept
        ("40,5,5", EPFL, False, True, False),  # off stays off
        ("40,5,5", EPFL, True, False, True),  # matching off: as asked
        (None, EPFL, True, True, True),  # unknown: as asked
    ],
)
def test_the_scm_only_runs_on_sections_it_suits(voxel_size, trained, use_scm, match, expected, caplog):
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        assert scm_suits(use_scm, None, voxel_size, trained, match) is expected
    assert ("stage 1 alone" in caplog.text) is (use_scm and not expected)


def test_bad_values_are_one_line_errors():
    with pytest.raises(InputError, match="voxel size must be Z,Y,X in nm.*'abc'"):
        matched_downsample(2, None, "abc", EPFL)
    with pytest.raises(InputError, match="trained_voxel_size must be"):
        matched_downsample(2, None, "5,5,5", [-1, 5, 5])
    with pytest.raises(InputError, match="match_voxel_size"):
        matched_downsample(2, None, "5,5,5", EPFL, "maybe")
    with pytest.raises(InputError, match="use_scm"):
        scm_suits("perhaps", None, "5,5,5", EPFL)


def test_the_input_voxel_size_comes_from_the_option_else_the_file(tmp_path):
    path = calibrated(tmp_path / "eight.tif", 8.0)
    assert input_voxel_nm(path) == pytest.approx((5.0, 8.0, 8.0))
    assert input_voxel_nm(path, "5,4,4") == pytest.approx((5.0, 4.0, 4.0))
    assert input_voxel_nm(tmp_path / "missing.tif") is None


def test_the_file_header_is_read_once_per_version(tmp_path, monkeypatch):
    import emseg_monai.inference.voxel_match as voxel_match

    reads = []
    real = voxel_match.voxel_size_nm
    monkeypatch.setattr(voxel_match, "voxel_size_nm", lambda p: reads.append(p) or real(p))
    path = calibrated(tmp_path / "once.tif", 8.0)
    for _ in range(3):  # a job's two downsamples and the SCM check
        assert input_voxel_nm(path) == pytest.approx((5.0, 8.0, 8.0))
    assert len(reads) == 1
    calibrated(path, 4.0, shape=(9, 48, 64))  # rewritten in place: read again
    assert input_voxel_nm(path) == pytest.approx((5.0, 4.0, 4.0))
    assert len(reads) == 2


def _settings(**overrides):
    parser = ConfigParser()
    parser.read_config(f"{default_bundle_root()}/configs/inference.yaml")
    for key, value in overrides.items():
        parser[key] = value
    return parser.get_parsed_content("settings")


def test_the_shipped_bundle_matches_a_calibrated_stack(tmp_path):
    assert config_defaults(f"{default_bundle_root()}/configs/inference.yaml")["trained_voxel_size"] == EPFL
    eight = str(calibrated(tmp_path / "eight.tif", 8.0))
    settings = _settings(image_file=eight)
    assert (settings.stage1_downsample, settings.scm_downsample) == (1.25, 1.25)
    assert _settings(image_file=eight, voxel_size="5,5,5").stage1_downsample == 2.0
    assert _settings(image_file=eight, match_voxel_size=False).stage1_downsample == 2.0
    sections = str(calibrated(tmp_path / "sections.tif", 5.0, z_nm=40.0))
    assert _settings(image_file=sections).use_scm is False  # 8x the trained thickness
    assert _settings(image_file=sections, match_voxel_size=False).use_scm is True
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((3, 40, 40), np.uint8), photometric="minisblack")  # no voxel size: as trained
    assert _settings(image_file=str(plain)).stage1_downsample == 2.0


def test_emseg_segment_takes_a_voxel_size(tmp_path, capsys):
    image = calibrated(tmp_path / "four.tif", 4.0)
    out = tmp_path / "masks.tif"
    assert main(["--quiet", "segment", str(image), str(out), "--voxel-size", "5,8,8"]) == 0
    assert read_mask(out).shape == (8, 48, 64)
    assert main(["--quiet", "segment", str(image), str(out), "--overwrite", "--no-voxel-match"]) == 0
    assert main(["segment", str(image), str(tmp_path / "o.tif"), "--voxel-size", "5,x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "voxel size must be" in err[0] and "'5,x'" in err[0], err


def test_a_training_run_records_its_voxel_size(tiny_run):
    # tiny_data records no voxel size: the run's bundle leaves its inputs' voxel size alone, and keeps
    # the Z/XY ratio it assumed (isotropic: its image does not read as thick sections)
    inference = config_defaults(tiny_run / "configs" / "inference.yaml")
    assert inference["trained_voxel_size"] is None and inference["trained_z_ratio"] == 1.0


def test_a_run_of_unknown_voxel_size_skips_the_scm_on_much_thicker_sections(tiny_run, tmp_path, caplog):
    """Through the run's own inference.yaml, as ``emseg segment --models RUN`` meets it."""
    from emseg_monai.workflows import segment_file

    image = calibrated(tmp_path / "forty.tif", 5.0, z_nm=40.0)  # records 40 x 5 x 5 nm
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        segment_file(image, tmp_path / "masks.tif", tiny_run)
    assert "8.0x its pixels, 8.0x the training stack's Z/XY of 1.0" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        segment_file(image, tmp_path / "as_trained.tif", tiny_run, voxel_size="5,5,5")
    assert "estimated or assumed" not in caplog.text
    shifted = tmp_path / "shifted.tif"  # no voxel size; sections 8.5 px apart
    tifffile.imwrite(shifted, shifted_stack())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        segment_file(shifted, tmp_path / "ratio_8.tif", tiny_run, trained_z_ratio=8.0)  # as a thick run writes
    assert "smoothed in Y and X only" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        segment_file(shifted, tmp_path / "ratio_1.tif", tiny_run)  # its own ratio, 1: not measured
    assert "smoothed in Y and X only" not in caplog.text


@pytest.mark.parametrize(
    ("voxel_size", "trained", "ratio", "expected"),
    [
        ("40,5,5", None, 1.0, False),  # an isotropic-assumed run, 8x sections: stage 1 alone
        ("9,5,5", None, 1.0, True),  # under twice the ratio: kept
        ("40,5,5", None, 8.0, True),  # a run on stacks estimated as thick: kept
        ("40,5,5", None, None, True),  # nothing known of the training stack: as asked
        ("40,5,5", [40, 5, 5], 1.0, True),  # a known training voxel size wins over the ratio
        ("40,5,5", None, "null", True),  # null as text, as from a bundle command line
    ],
)
def test_a_run_of_unknown_voxel_size_judges_sections_by_its_ratio(voxel_size, trained, ratio, expected, caplog):
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        assert scm_suits(True, None, voxel_size, trained, True, 15, ratio) is expected
    assert ("estimated or assumed" in caplog.text) is (not expected)


def test_the_trained_ratio_comes_from_the_voxel_size_else_the_ratio():
    from emseg_monai.inference.voxel_match import trained_on_thick_sections, trained_ratio

    assert trained_ratio([40, 5, 5], 1.0) == 8.0 and trained_ratio(None, "3.5") == 3.5
    assert trained_ratio(None, None) is None and trained_ratio("null", "null") is None
    assert trained_on_thick_sections(None, 8.0) and not trained_on_thick_sections(None, 1.0)
    assert not trained_on_thick_sections([5, 5, 5], 8.0)  # the known size wins
    with pytest.raises(InputError, match="trained_z_ratio must be a number, got 'thick'"):
        trained_ratio(None, "thick")
    with pytest.raises(InputError, match="trained_z_ratio must be between 0.01 and 1000, got 0"):
        trained_ratio(None, 0)


def test_a_bundle_of_thick_sections_drops_the_z_smoothing_on_a_stack_of_shifted_ones(tmp_path, caplog):
    from scipy.ndimage import gaussian_filter

    from emseg_monai.inference.voxel_match import z_smoothing_for

    plane = gaussian_filter(np.random.default_rng(0).normal(size=(96, 96)), 2.0, mode="wrap")
    plane = np.round(255 * (plane - plane.min()) / np.ptp(plane)).astype(np.uint8)
    aligned, shifted = tmp_path / "aligned.tif", tmp_path / "shifted.tif"
    tifffile.imwrite(aligned, np.repeat(plane[None], 8, axis=0))
    moves = [(0, 0), (6, 6), (0, 0), (-6, 5), (0, 0), (6, 6), (0, 0), (-6, 5)]  # 7.8 to 8.5 px apart
    tifffile.imwrite(shifted, np.stack([np.roll(plane, m, axis=(0, 1)) for m in moves]))
    thick = [40.0, 5.0, 5.0]
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        assert z_smoothing_for(None, shifted, thick, True, 2) == 0.0
    assert "shifted by 8.5 px or more (limit 6)" in caplog.text and "smoothed in Y and X only" in caplog.text
    assert z_smoothing_for("null", aligned, thick, True, 2) is None  # lined up: smoothing's sigma along Z too
    assert z_smoothing_for(None, shifted, thick, True, 4) is None  # 8.5 px are under 3 px at 1/4 resolution
    assert z_smoothing_for(None, shifted, [5.0, 5.0, 5.0], True, 2) is None  # trained isotropic: not measured
    assert z_smoothing_for(None, shifted, None, True, 2) is None  # training voxel size unknown
    assert z_smoothing_for(None, shifted, None, True, 2, True, 1.0, 8.0) == 0.0  # ... but estimated as thick
    assert z_smoothing_for(None, shifted, None, True, 2, True, 1.0, 1.0) is None  # ... or assumed isotropic
    assert z_smoothing_for(None, shifted, thick, "false", 2) is None  # match_voxel_size off
    assert z_smoothing_for(None, shifted, thick, True, 2, use_scm=False) is None  # stage 1 alone: nothing to smooth
    assert z_smoothing_for(None, tmp_path / "none.tif", thick, True, 2) is None  # an array, no file (napari)
    assert z_smoothing_for("1.5", shifted, thick, True, 2) == 1.5  # an explicit sigma is kept
    with pytest.raises(InputError, match="smoothing_z must be a number, got 'flat'"):
        z_smoothing_for("flat", shifted, thick, True, 2)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        assert z_smoothing_for(None, shifted, thick, True, 2, True, "0") is None  # smoothing 0: nothing to guard
        assert z_smoothing_for(None, shifted, thick, True, 2, True, 0.0) is None
    assert caplog.text == ""  # and no warning about a smoothing that does not happen
    assert z_smoothing_for(None, shifted, thick, True, 2, True, 1.0) == 0.0
    assert z_smoothing_for(None, shifted, thick, True, 2, True, "null") == 0.0  # unknown (old folders): guarded
    with pytest.raises(InputError, match="smoothing must be a number, got 'wide'"):
        z_smoothing_for(None, shifted, thick, True, 2, True, "wide")


def test_shifted_sections_measures_arrays_and_knows_thick_training():
    from emseg_monai.inference.voxel_match import shifted_sections, trained_on_thick_sections

    shifted = shifted_stack()  # 8.5 px apart
    quartile, limit = shifted_sections(shifted, 2, warn=False)
    assert quartile == pytest.approx(8.5, abs=0.1) and limit == 6
    assert shifted_sections(shifted, 4, warn=False) is None  # 12 px allowed at 1/4 resolution
    assert shifted_sections(np.repeat(shifted[:1], 6, axis=0), 1, warn=False) is None
    assert trained_on_thick_sections([40, 5, 5]) and trained_on_thick_sections("10,5,5")
    assert not trained_on_thick_sections([9.9, 5, 5]) and not trained_on_thick_sections(None)
    assert not trained_on_thick_sections("null")
    with pytest.raises(InputError, match="scm_downsample"):
        shifted_sections(shifted, 0.5)
