import pytest

from emseg_monai import default_bundle_root
from emseg_monai.errors import InputError
from emseg_monai.workflows import config_path, resolve_bundle, segment_file
from tests.conftest import shifted_stack


def test_config_path_finds_bundle_configs_and_names_missing_ones(tmp_path):
    assert config_path("train.yaml").endswith("train.yaml")
    with pytest.raises(InputError, match="bundle config not found"):
        config_path("train.yaml", tmp_path)


def test_resolve_bundle_takes_the_folder_or_its_models(tmp_path):
    shipped = resolve_bundle()
    assert shipped == resolve_bundle(default_bundle_root()) == resolve_bundle(shipped / "models")
    with pytest.raises(InputError, match="not a bundle folder"):
        resolve_bundle(tmp_path)
    (tmp_path / "stage1.pt").write_bytes(b"")
    with pytest.raises(InputError, match="before 0.2"):
        resolve_bundle(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        resolve_bundle(tmp_path / "nope")


def test_segment_file_names_missing_weights(tmp_path, tiny_data):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(resolve_bundle() / "configs", bundle / "configs")
    with pytest.raises(Exception) as info:
        segment_file(tiny_data / "image.tif", tmp_path / "out.tif", bundle)
    from emseg_monai.errors import find_cause as _find

    assert "model.pt" in str(_find(info.value, InputError))
    assert not (tmp_path / "out.tif").exists()


def test_smoothing_overrides_reach_a_run_folder_written_before_the_options(tmp_path, tiny_run, tiny_data):
    import shutil

    from emseg_monai.io import read_stack
    from emseg_monai.workflows import load_bundle_networks

    older = tmp_path / "run"
    shutil.copytree(tiny_run, older)
    text = _drop_keys(older, "smoothing_z")  # as emseg-monai < 0.8.9 wrote it
    assert "smoothing_z" not in text
    assert load_bundle_networks(older)[2].smoothing_z is None  # one sigma in all axes, as that version did
    assert load_bundle_networks(older, smoothing_z=0)[2].smoothing_z == 0.0
    flat, usual = tmp_path / "flat.tif", tmp_path / "usual.tif"
    segment_file(tiny_data / "image.tif", flat, older, smoothing=2.0, smoothing_z=0)
    segment_file(tiny_data / "image.tif", usual, older, smoothing=2.0)
    assert (read_stack(flat) != read_stack(usual)).any()  # the override took effect


def _drop_keys(folder, keys):
    """Remove the lines of ``keys`` (a regex alternation) from ``folder``'s inference.yaml, at any
    indent (top level and settings), as an older emseg-monai wrote it; returns the new text."""
    import re

    config = folder / "configs" / "inference.yaml"
    text = re.sub(rf"(?m)^\s*(?:{keys}): .*\n", "", config.read_text())
    config.write_text(text)
    return text


def _thick_copy(run, dest):
    """A copy of a training run folder whose inference.yaml says it was trained on 40 x 5 x 5 nm voxels."""
    import re
    import shutil

    shutil.copytree(run, dest)
    config = dest / "configs" / "inference.yaml"
    text, found = re.subn(r"(?m)^trained_voxel_size: .*$", "trained_voxel_size: [40.0, 5.0, 5.0]", config.read_text())
    assert found == 1
    config.write_text(text)
    return dest


def test_array_settings_read_no_file_of_the_working_directory(tmp_path, tiny_run, monkeypatch):
    """load_bundle_networks is for arrays: the config's default image_file (data/image.tif) is not
    measured, even where the working directory holds one and matching is on."""
    import tifffile

    from emseg_monai.workflows import load_bundle_networks

    run = _thick_copy(tiny_run, tmp_path / "run")
    (tmp_path / "data").mkdir()
    tifffile.imwrite(tmp_path / "data" / "image.tif", shifted_stack())
    monkeypatch.chdir(tmp_path)
    settings = load_bundle_networks(run, match_voxel_size=True, voxel_size="40,5,5")[2]
    assert settings.smoothing_z is None
    given = load_bundle_networks(run, match_voxel_size=True, voxel_size="40,5,5", image_file="data/image.tif")[2]
    assert given.smoothing_z == 0.0  # the same stack named as the file: measured, as emseg segment does


def test_a_run_folder_from_before_the_z_sigma_gets_the_shift_guard_for_files(tmp_path, tiny_run, caplog):
    """A thick-section run folder written before 0.8.9 (no smoothing_z in its configs): emseg segment
    measures a file's shifts as 0.8.9's configs do, and an explicit sigma still wins."""
    import logging
    import re

    import numpy as np
    import tifffile

    from emseg_monai.io import read_stack

    older = _thick_copy(tiny_run, tmp_path / "run")
    text = _drop_keys(older, "smoothing_z")  # as emseg-monai < 0.8.9 wrote it
    assert "smoothing_z" not in text
    shifted = tmp_path / "shifted.tif"
    tifffile.imwrite(shifted, shifted_stack())
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        segment_file(shifted, tmp_path / "guarded.tif", older, voxel_size="40,5,5")
    assert "smoothed in Y and X only" in caplog.text
    segment_file(shifted, tmp_path / "flat.tif", older, voxel_size="40,5,5", smoothing_z=0)
    sigma = re.search(r"(?m)^smoothing: ([0-9.]+)", text).group(1)
    segment_file(shifted, tmp_path / "before.tif", older, voxel_size="40,5,5", smoothing_z=float(sigma))
    guarded = read_stack(tmp_path / "guarded.tif")
    np.testing.assert_array_equal(guarded, read_stack(tmp_path / "flat.tif"))
    assert float(sigma) > 0 and (guarded != read_stack(tmp_path / "before.tif")).any()  # what 0.8.8 wrote differs


def test_stage1_flips_reach_a_run_folder_written_before_the_option(tmp_path, tiny_run, tiny_data):
    """A folder of emseg-monai < 0.8.11 (no stage1_flips key): the override still turns stage 1's flips on."""
    import shutil

    import numpy as np

    from emseg_monai.io import read_stack

    older = tmp_path / "run"
    shutil.copytree(tiny_run, older)
    assert "stage1_flips" not in _drop_keys(older, "stage1_flips")
    image = tiny_data / "test_image.tif"
    for folder, name in ((older, "old"), (tiny_run, "new")):
        segment_file(image, tmp_path / f"{name}.tif", folder, stage1_flips=True, save_stage1=True)
    flipped = read_stack(tmp_path / "old_stage1_prob.tif")
    np.testing.assert_array_equal(flipped, read_stack(tmp_path / "new_stage1_prob.tif"))
    segment_file(image, tmp_path / "plain.tif", older, save_stage1=True)
    assert not np.array_equal(flipped, read_stack(tmp_path / "plain_stage1_prob.tif"))


def test_the_old_folder_guard_is_the_shipped_configs_expression():
    from emseg_monai.workflows import OLD_FOLDER_Z_GUARD, inference_config

    shipped = inference_config(resolve_bundle())["settings"]["smoothing_z"]
    old = shipped.replace("(@smoothing_z,", "(None,", 1).replace(", @trained_z_ratio)", ")", 1)
    assert old == OLD_FOLDER_Z_GUARD  # old folders: no smoothing_z key, and no trained_z_ratio (0.8.12) either
    assert OLD_FOLDER_Z_GUARD.count(", @smoothing)") == 1  # left out for folders older than the smoothing


def test_a_run_folder_from_before_the_smoothing_gets_the_guard_without_it(tmp_path, tiny_run, caplog):
    """A thick-section folder of emseg-monai 0.7 to 0.8.5 (trained_voxel_size, but no smoothing and
    no smoothing_z keys) segments, with the file's shift guard, and does not ask for the missing key."""
    import logging

    import tifffile

    older = _thick_copy(tiny_run, tmp_path / "run")
    _drop_keys(older, "smoothing|smoothing_z")
    from emseg_monai.workflows import inference_config

    written = inference_config(older)
    assert not any(key in written or key in written["settings"] for key in ("smoothing", "smoothing_z"))
    shifted = tmp_path / "shifted.tif"
    tifffile.imwrite(shifted, shifted_stack())
    with caplog.at_level(logging.WARNING, logger="emseg_monai.inference.voxel_match"):
        figures = segment_file(shifted, tmp_path / "out.tif", older, voxel_size="40,5,5")
    assert "smoothed in Y and X only" in caplog.text
    assert (tmp_path / "out.tif").exists() and figures is not None
