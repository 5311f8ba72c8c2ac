import pytest

from emseg_monai import default_bundle_root
from emseg_monai.errors import InputError
from emseg_monai.workflows import config_path, resolve_bundle, segment_file


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
    import re
    import shutil

    from emseg_monai.io import read_stack
    from emseg_monai.workflows import load_bundle_networks

    older = tmp_path / "run"
    shutil.copytree(tiny_run, older)
    config = older / "configs" / "inference.yaml"
    text = re.sub(r"(?m)^\s*smoothing_z: .*\n", "", config.read_text())  # as emseg-monai < 0.8.9 wrote it
    config.write_text(text)
    assert "smoothing_z" not in text
    assert load_bundle_networks(older)[2].smoothing_z is None  # one sigma in all axes, as that version did
    assert load_bundle_networks(older, smoothing_z=0)[2].smoothing_z == 0.0
    flat, usual = tmp_path / "flat.tif", tmp_path / "usual.tif"
    segment_file(tiny_data / "image.tif", flat, older, smoothing=2.0, smoothing_z=0)
    segment_file(tiny_data / "image.tif", usual, older, smoothing=2.0)
    assert (read_stack(flat) != read_stack(usual)).any()  # the override took effect
