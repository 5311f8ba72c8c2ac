import csv

import nibabel as nib
import numpy as np
import pytest
import tifffile

from emseg_monai.cli import main
from emseg_monai.errors import InputError
from emseg_monai.evaluation.measure import COLUMNS, measure_objects, parse_voxel_size, voxel_size_nm
from emseg_monai.io import write_stack


def two_objects():
    mask = np.zeros((6, 10, 12), bool)
    mask[1:4, 2:5, 3:7] = True  # 3 x 3 x 4 = 36 voxels, inside
    mask[4:6, 8:10, 0:2] = True  # 2 x 2 x 2 = 8 voxels, touches the border
    return mask


def test_rows_give_size_box_centroid_and_border():
    rows = measure_objects(two_objects(), voxel_size=(10.0, 5.0, 5.0))
    assert [r["voxels"] for r in rows] == [36, 8]
    first, second = rows
    assert (first["first_slice"], first["last_slice"], first["y_min"], first["y_max"]) == (1, 3, 2, 4)
    assert (first["x_min"], first["x_max"]) == (3, 6)
    assert (first["centroid_z"], first["centroid_y"], first["centroid_x"]) == (2.0, 3.0, 4.5)
    assert first["touches_border"] is False and second["touches_border"] is True
    assert first["volume_um3"] == pytest.approx(36 * 10 * 5 * 5 * 1e-9)


def test_connectivity_decides_whether_corners_join():
    mask = np.zeros((3, 3, 3), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True
    assert len(measure_objects(mask, connectivity=26)) == 1
    assert len(measure_objects(mask, connectivity=18)) == 2
    assert len(measure_objects(mask, connectivity=6)) == 2


def test_min_voxels_and_empty_mask():
    assert [r["voxels"] for r in measure_objects(two_objects(), min_voxels=10)] == [36]
    assert measure_objects(np.zeros((2, 4, 4), bool)) == []


def test_no_voxel_size_leaves_volume_empty():
    assert measure_objects(two_objects())[0]["volume_um3"] == ""


@pytest.mark.parametrize("text,expected", [("5", (5.0, 5.0, 5.0)), ("10,5,5", (10.0, 5.0, 5.0)), ("8x4x4", (8, 4, 4))])
def test_parse_voxel_size(text, expected):
    assert parse_voxel_size(text) == expected


@pytest.mark.parametrize("text", ["a,b,c", "1,2", "0,5,5", "-1", "nan"])
def test_parse_voxel_size_rejects(text):
    with pytest.raises(InputError, match="voxel size"):
        parse_voxel_size(text)


def test_bad_connectivity_and_shape():
    with pytest.raises(InputError, match="got 4"):
        measure_objects(two_objects(), connectivity=4)
    with pytest.raises(InputError, match=r"\(4, 4\)"):
        measure_objects(np.zeros((4, 4), bool))


def test_voxel_size_from_imagej_tiff_in_microns(tmp_path):
    path = tmp_path / "m.tif"
    tifffile.imwrite(
        path,
        two_objects().astype(np.uint8) * 255,
        imagej=True,
        resolution=(1 / 0.005, 1 / 0.005),
        metadata={"spacing": 0.01, "unit": "micron", "axes": "ZYX"},
    )
    assert voxel_size_nm(path) == pytest.approx((10.0, 5.0, 5.0))


def test_voxel_size_from_nifti_in_mm(tmp_path):
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.diag([5e-6, 5e-6, 1e-5, 1]))
    image.header.set_xyzt_units("mm")
    nib.save(image, tmp_path / "m.nii.gz")
    assert voxel_size_nm(tmp_path / "m.nii.gz") == pytest.approx((10.0, 5.0, 5.0))


def test_no_unit_means_unknown(tmp_path):
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, two_objects().astype(np.uint8), imagej=True, resolution=(1, 1), metadata={"spacing": 2.0})
    assert voxel_size_nm(path) is None
    nm = write_stack(tmp_path / "nm.tif", two_objects().astype(np.uint8), voxel_size=(2.0, 1.0, 1.0))
    assert voxel_size_nm(nm) == pytest.approx((2.0, 1.0, 1.0))  # write_stack records nm


def test_cli_writes_csv_beside_the_mask(tmp_path, capsys):
    write_stack(tmp_path / "final.nii.gz", two_objects().astype(np.uint8) * 255)
    assert main(["measure", str(tmp_path / "final.nii.gz"), "--voxel-size", "10,5,5"]) == 0
    assert "2 objects (1 touching the border)" in capsys.readouterr().out
    with open(tmp_path / "final_objects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    assert [int(r["voxels"]) for r in rows] == [36, 8]
    assert float(rows[1]["volume_um3"]) == pytest.approx(8 * 250 * 1e-9)


def test_cli_refuses_existing_csv_and_bad_voxel_size(tmp_path, capsys):
    write_stack(tmp_path / "m.tif", two_objects().astype(np.uint8))
    (tmp_path / "m_objects.csv").write_text("keep")
    assert main(["measure", str(tmp_path / "m.tif")]) == 2
    assert main(["measure", str(tmp_path / "m.tif"), "--csv", str(tmp_path / "o.csv"), "--voxel-size", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "exists" in err[0] and "'0'" in err[1]
    assert (tmp_path / "m_objects.csv").read_text() == "keep" and not (tmp_path / "o.csv").exists()
