"""Tests for emseg_monai.io.tiff_reader: TiffStackReader inside MONAI LoadImage / LoadImaged."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirst, LoadImage, LoadImaged

from emseg_monai.io import TiffStackReader, write_stack

SHAPE = (5, 16, 32)
DTYPES = [np.uint8, np.uint16, np.float32]


def ramp(dtype) -> np.ndarray:
    values = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    if np.dtype(dtype).kind == "f":
        return (values / 9.0 - 2.5).astype(dtype)
    return (values * 31 % (np.iinfo(dtype).max + 1)).astype(dtype)


def write_multipage(path, array) -> None:
    write_stack(path, array)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == array.shape[0]


def write_plain_pages(path, array) -> None:
    for page in array:
        tifffile.imwrite(path, page, append=True, metadata=None)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == array.shape[0]


def write_volumetric(path, array) -> None:
    tifffile.imwrite(path, array, volumetric=True, tile=SHAPE[1:], photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1
        assert tif.pages[0].imagedepth == array.shape[0]


WRITERS = [write_multipage, write_plain_pages, write_volumetric]


def load(path, **kwargs):
    return LoadImage(reader=TiffStackReader(), image_only=True, dtype=None, **kwargs)(path)


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
@pytest.mark.parametrize("dtype", DTYPES)
def test_load_image_keeps_zyx_shape_dtype_and_values(tmp_path, writer, dtype):
    array = ramp(dtype)
    path = tmp_path / "stack.tif"
    writer(path, array)
    img = load(path)
    assert isinstance(img, MetaTensor)
    assert tuple(img.shape) == SHAPE
    assert img.dtype.is_floating_point == (array.dtype.kind == "f")
    np.testing.assert_array_equal(img.numpy(), array)
    assert img.meta["filename_or_obj"] == str(path)
    assert img.meta["original_channel_dim"] == "no_channel"


def test_load_image_default_dtype_is_float32(tmp_path):
    array = ramp(np.uint16)
    write_multipage(tmp_path / "stack.tif", array)
    img = LoadImage(reader=TiffStackReader(), image_only=True)(tmp_path / "stack.tif")
    assert img.dtype == torch.float32
    np.testing.assert_array_equal(img.numpy(), array.astype(np.float32))


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
@pytest.mark.parametrize("dtype", DTYPES)
def test_reader_get_data_keeps_stored_dtype(tmp_path, writer, dtype):
    writer(tmp_path / "stack.tif", ramp(dtype))
    reader = TiffStackReader()
    array, meta = reader.get_data(reader.read(tmp_path / "stack.tif"))
    assert array.dtype == dtype
    np.testing.assert_array_equal(array, ramp(dtype))
    np.testing.assert_array_equal(meta["spatial_shape"], SHAPE)


def test_reader_dtype_casts(tmp_path):
    write_multipage(tmp_path / "stack.tif", ramp(np.uint8))
    reader = TiffStackReader(dtype=np.float32)
    array, _ = reader.get_data(reader.read(tmp_path / "stack.tif"))
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, ramp(np.uint8).astype(np.float32))


def test_load_image_with_dotted_reader_name(tmp_path):
    write_multipage(tmp_path / "stack.tif", ramp(np.uint8))
    img = LoadImage(reader="emseg_monai.io.TiffStackReader", image_only=True)(tmp_path / "stack.tif")
    assert tuple(img.shape) == SHAPE


def test_ensure_channel_first_adds_channel(tmp_path):
    write_multipage(tmp_path / "stack.tif", ramp(np.uint8))
    img = EnsureChannelFirst()(load(tmp_path / "stack.tif"))
    assert tuple(img.shape) == (1, *SHAPE)


def test_load_imaged_reads_image_and_label(tmp_path):
    image, label = ramp(np.uint16), (ramp(np.uint8) > 100).astype(np.uint8) * np.uint8(255)
    write_multipage(tmp_path / "image.tif", image)
    write_multipage(tmp_path / "label.tif", label)
    data = {"image": str(tmp_path / "image.tif"), "label": str(tmp_path / "label.tif"), "id": 7}
    out = LoadImaged(keys=["image", "label"], reader=TiffStackReader(), dtype=None)(data)
    assert out["id"] == 7
    np.testing.assert_array_equal(out["image"].numpy(), image)
    np.testing.assert_array_equal(out["label"].numpy(), label)
    assert out["label"].meta["filename_or_obj"] == str(tmp_path / "label.tif")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.tif", True),
        ("a.TIFF", True),
        ("dir.tif/a.tiff", True),
        ("a.nii.gz", False),
        ("a.png", False),
        ("a.tif.bak", False),
    ],
)
def test_verify_suffix(name, expected):
    assert TiffStackReader().verify_suffix(name) is expected


def test_verify_suffix_needs_all_files_tiff():
    reader = TiffStackReader()
    assert reader.verify_suffix(["a.tif", "b.tiff"])
    assert not reader.verify_suffix(["a.tif", "b.nii"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_voxel_size_in_affine_and_pixdim(tmp_path, dtype):
    path = write_stack(tmp_path / "stack.tif", ramp(dtype), voxel_size=(2.0, 0.5, 0.25))
    img = load(path)
    np.testing.assert_allclose(np.asarray(img.affine), np.diag([2.0, 0.5, 0.25, 1.0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(img.pixdim), (2.0, 0.5, 0.25), rtol=1e-6)
    np.testing.assert_allclose(img.meta["pixdim"], (1.0, 2.0, 0.5, 0.25), rtol=1e-6)
    np.testing.assert_array_equal(img.numpy(), ramp(dtype))


def test_no_voxel_size_gives_identity_affine(tmp_path):
    path = write_stack(tmp_path / "stack.tif", ramp(np.uint8))
    img = load(path)
    np.testing.assert_array_equal(np.asarray(img.affine), np.eye(4))
    np.testing.assert_array_equal(img.meta["spatial_shape"], SHAPE)
