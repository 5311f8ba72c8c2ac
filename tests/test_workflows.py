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
