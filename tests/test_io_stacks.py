"""Tests for emseg_monai.io.stacks: round trips, validation errors and atomic writes."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from emseg_monai.errors import InputError
from emseg_monai.io.stacks import atomic_write, check_output_path, read_mask, read_stack, write_stack
from emseg_monai.io.tiff_reader import read_tiff_array
from emseg_monai.io.voxels import voxel_size_nm

SHAPE = (4, 6, 5)
SUFFIXES = (".tif", ".nii.gz")


def ramp(dtype) -> np.ndarray:
    values = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    if np.dtype(dtype).kind == "f":
        return (values / 7.0 - 3.0).astype(dtype)
    return (values * 37 % (np.iinfo(dtype).max + 1)).astype(dtype)


def named(path: Path) -> str:
    return re.escape(str(path))


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_round_trip_keeps_values_dtype_and_zyx_order(tmp_path, suffix, dtype):
    array = ramp(dtype)
    path = write_stack(tmp_path / f"stack{suffix}", array)
    out = read_stack(path)
    assert out.shape == SHAPE
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_bool_is_written_as_0_255(tmp_path, suffix):
    mask = ramp(np.uint8) % 3 == 0
    out = read_stack(write_stack(tmp_path / f"mask{suffix}", mask))
    assert out.dtype == np.uint8
    assert set(np.unique(out).tolist()) == {0, 255}
    np.testing.assert_array_equal(out == 255, mask)


def test_nifti_on_disk_is_xyz(tmp_path):
    array = ramp(np.uint16)
    path = write_stack(tmp_path / "stack.nii.gz", array)
    on_disk = np.asarray(nib.load(str(path)).dataobj)
    assert on_disk.shape == SHAPE[::-1]
    np.testing.assert_array_equal(on_disk, array.transpose(2, 1, 0))


def test_nifti_records_voxel_size(tmp_path):
    path = write_stack(tmp_path / "stack.nii.gz", ramp(np.uint8), voxel_size=(2.0, 0.5, 0.25))
    np.testing.assert_allclose(nib.load(str(path)).header.get_zooms(), (0.25, 0.5, 2.0))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_records_voxel_size(tmp_path, dtype):
    path = write_stack(tmp_path / "stack.tif", ramp(dtype), voxel_size=(2.0, 0.5, 0.25))
    array, voxel_size = read_tiff_array(path)
    np.testing.assert_array_equal(array, ramp(dtype))
    np.testing.assert_allclose(voxel_size, (2.0, 0.5, 0.25), rtol=1e-6)
    np.testing.assert_allclose(voxel_size_nm(path), (2.0, 0.5, 0.25), rtol=1e-6)  # in nm, as the pipeline reads it


def test_tiff_without_voxel_size_reports_none(tmp_path):
    _, voxel_size = read_tiff_array(write_stack(tmp_path / "stack.tif", ramp(np.uint8)))
    assert voxel_size is None


def test_write_stack_overwrite_false_refuses_existing(tmp_path):
    path = write_stack(tmp_path / "stack.tif", ramp(np.uint8))
    with pytest.raises(InputError, match="output exists"):
        write_stack(path, ramp(np.uint8), overwrite=False)


def test_write_stack_rejects_2d(tmp_path):
    with pytest.raises(InputError, match=r"\(Z, Y, X\) array, got shape \(6, 5\)"):
        write_stack(tmp_path / "stack.tif", np.zeros((6, 5), np.uint8))


def test_write_leaves_only_the_target(tmp_path):
    write_stack(tmp_path / "stack.tif", ramp(np.uint8))
    write_stack(tmp_path / "stack.nii.gz", ramp(np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.nii.gz", "stack.tif"]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("high", [1, 255])
def test_read_mask_accepts_0_1_and_0_255(tmp_path, suffix, high):
    truth = ramp(np.uint8) % 4 == 1
    path = write_stack(tmp_path / f"mask{suffix}", truth.astype(np.uint8) * np.uint8(high))
    mask = read_mask(path, shape=SHAPE)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, truth)


def test_read_mask_lists_unexpected_values(tmp_path):
    labels = np.zeros(SHAPE, np.uint8)
    labels[0, 0, :3] = (1, 2, 7)
    path = write_stack(tmp_path / "labels.tif", labels)
    with pytest.raises(InputError, match=f"{named(path)} is not binary: values 0, 1, 2, 7 found"):
        read_mask(path)


def test_read_mask_rejects_0_1_255_mix(tmp_path):
    labels = np.zeros(SHAPE, np.uint8)
    labels[0, 0, :2] = (1, 255)
    path = write_stack(tmp_path / "labels.tif", labels)
    with pytest.raises(InputError, match="values 0, 1, 255 found"):
        read_mask(path)


def test_read_mask_shape_mismatch(tmp_path):
    path = write_stack(tmp_path / "labels.tif", np.zeros(SHAPE, np.uint8))
    with pytest.raises(InputError, match=rf"{named(path)} has shape \(4, 6, 5\), expected \(4, 6, 6\)"):
        read_mask(path, shape=(4, 6, 6))


def test_missing_file(tmp_path):
    path = tmp_path / "absent.tif"
    with pytest.raises(InputError, match=f"does not exist: {named(path)}"):
        read_stack(path)


def test_folder_instead_of_file(tmp_path):
    folder = tmp_path / "stack.tif"
    folder.mkdir()
    with pytest.raises(InputError, match=f"got a folder: {named(folder)}"):
        read_stack(folder)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tif"
    path.touch()
    with pytest.raises(InputError, match=f"empty: {named(path)}"):
        read_stack(path)


def test_unsupported_input_suffix(tmp_path):
    path = tmp_path / "stack.png"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported stack format '.png'"):
        read_stack(path)


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated_tiff(tmp_path, keep):
    rng = np.random.default_rng(0)
    path = write_stack(tmp_path / "stack.tif", rng.integers(0, 255, (4, 32, 32), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match=f"cannot read {named(path)} as .tif stack"):
        read_stack(path)


def test_png_renamed_to_tif(tmp_path):
    png = tmp_path / "image.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    path = png.rename(tmp_path / "image.tif")
    with pytest.raises(InputError, match=f"cannot read {named(path)} as .tif stack: TiffFileError"):
        read_stack(path)


def test_garbage_nifti(tmp_path):
    path = tmp_path / "stack.nii.gz"
    path.write_bytes(b"not a nifti file at all" * 20)
    with pytest.raises(InputError, match=f"cannot read {named(path)} as .nii.gz stack"):
        read_stack(path)


def test_2d_tiff_is_not_a_stack(tmp_path):
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, np.zeros((8, 9), np.uint8))
    with pytest.raises(InputError, match=f"{named(path)} holds a 2D image; expected a 3D"):
        read_stack(path)


def test_4d_nifti_is_rejected(tmp_path):
    path = tmp_path / "stack.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 4, 2), np.float32), np.eye(4)), str(path))
    with pytest.raises(InputError, match=rf"{named(path)} holds a 4D array of shape \(5, 6, 4, 2\)"):
        read_stack(path)


def test_rgb_stack_is_rejected(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((4, 8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match="RGB or multi-sample pixels"):
        read_stack(path)


def test_complex_dtype_is_rejected(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros(SHAPE, np.complex64))
    with pytest.raises(InputError, match="unsupported dtype complex64"):
        read_stack(path)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_is_rejected(tmp_path, suffix, bad):
    array = ramp(np.float32)
    array[1, 2, 3] = bad
    array[2, 0, 0] = bad
    path = write_stack(tmp_path / f"stack{suffix}", array)
    with pytest.raises(InputError, match=f"{named(path)} contains 2 NaN or inf values"):
        read_stack(path)


def test_check_output_path_accepts_new_file(tmp_path):
    assert check_output_path(tmp_path / "out.csv") == tmp_path / "out.csv"


def test_check_output_path_missing_folder(tmp_path):
    folder = tmp_path / "nowhere"
    with pytest.raises(InputError, match=f"output folder does not exist: {named(folder)}"):
        check_output_path(folder / "out.tif")


def test_check_output_path_existing_file(tmp_path):
    path = tmp_path / "out.tif"
    path.write_bytes(b"old")
    with pytest.raises(InputError, match=f"output exists: {named(path)}"):
        check_output_path(path)
    assert check_output_path(path, overwrite=True) == path


def test_check_output_path_folder_target(tmp_path):
    folder = tmp_path / "out.tif"
    folder.mkdir()
    with pytest.raises(InputError, match="output path is a folder"):
        check_output_path(folder, overwrite=True)


@pytest.mark.parametrize("name", ["out.txt", "out.jpg", "out"])
def test_check_output_path_unsupported_suffix(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(InputError, match=f"unsupported output format .* for {named(path)}"):
        check_output_path(path)


def test_atomic_write_failure_leaves_nothing(tmp_path):
    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "out.tif", fail)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_failure_keeps_existing_target(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("original")

    def fail(tmp: Path) -> None:
        tmp.write_text("replacement")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, fail)
    assert target.read_text() == "original"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_passes_temp_path_with_suffix(tmp_path):
    seen = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_text("done")

    target = atomic_write(tmp_path / "out.nii.gz", write)
    assert seen[0].parent == tmp_path
    assert seen[0].name.endswith(".nii.gz")
    assert seen[0] != target
    assert target.read_text() == "done"
    assert list(tmp_path.iterdir()) == [target]


def test_single_rgb_image_is_rejected(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match=named(path)):
        read_stack(path)
