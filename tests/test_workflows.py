import pytest

from emseg_monai.errors import InputError
from emseg_monai.workflows import SETTINGS_FILE, config_path, load_settings, segment_file


def test_config_path_finds_bundle_configs_and_names_missing_ones(tmp_path):
    assert config_path("train.yaml").endswith("train.yaml")
    with pytest.raises(InputError, match="bundle config not found"):
        config_path("train.yaml", bundle_root=tmp_path)


def test_load_settings_keeps_shared_keys_only(tmp_path):
    assert load_settings(tmp_path) == {}
    (tmp_path / SETTINGS_FILE).write_text('{"scm_window": 5, "epochs": 3}')
    assert load_settings(tmp_path) == {"scm_window": 5}
    (tmp_path / SETTINGS_FILE).write_text("{not json")
    with pytest.raises(InputError, match="cannot parse"):
        load_settings(tmp_path)


def test_segment_file_needs_both_weights(tmp_path):
    (tmp_path / "stage1.pt").write_bytes(b"")
    with pytest.raises(InputError, match="scm.pt"):
        segment_file("any.tif", tmp_path / "out.tif", ckpt_dir=tmp_path)
