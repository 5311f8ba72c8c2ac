"""The bad-input catalogue: each case makes ``emseg`` exit 2 with one line naming the problem and the
value, and leaves no output behind (docs/reliability.md lists the cases)."""

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from emseg_monai import default_bundle_root
from emseg_monai.cli import main
from emseg_monai.io import write_stack
from tests.conftest import TINY_FEATURES


@pytest.fixture()
def files(tiny_data, tmp_path, monkeypatch):
    """Bad and good input files in tmp_path; returns tmp_path (also the working directory)."""
    monkeypatch.chdir(tmp_path)
    for name in ("image.tif", "label.tif"):
        (tmp_path / name).write_bytes((tiny_data / name).read_bytes())
    (tmp_path / "a_folder.tif").mkdir()
    (tmp_path / "empty.tif").write_bytes(b"")
    data = (tmp_path / "image.tif").read_bytes()
    (tmp_path / "truncated.tif").write_bytes(data[: len(data) // 2])
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    (tmp_path / "png.tif").write_bytes(png)
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((32, 32), np.uint8))
    nib.save(nib.Nifti1Image(np.zeros((4, 32, 32, 2), np.float32), np.eye(4)), tmp_path / "four_d.nii.gz")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((4, 32, 32, 3), np.uint8), photometric="rgb")
    nan = np.zeros((12, 32, 32), np.float32)
    nan[3, 4, 5] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    inf = np.zeros((12, 32, 32), np.float32)
    inf[0, 0, 0] = np.inf
    tifffile.imwrite(tmp_path / "inf.tif", inf)
    write_stack(tmp_path / "short_label.tif", np.zeros((6, 32, 32), np.uint8))
    write_stack(tmp_path / "grey_label.tif", np.full((12, 32, 32), 7, np.uint8))
    three = np.zeros((12, 32, 32), np.uint8)
    three[0, :2, :2] = [[1, 2], [3, 255]]
    write_stack(tmp_path / "multi_label.tif", three)
    write_stack(tmp_path / "existing.tif", np.zeros((12, 32, 32), np.uint8))
    from monai.networks.nets import BasicUNet

    for bundle in ("corrupt", "wrong"):  # bundle folders: the shipped configs, other weights
        shutil.copytree(Path(default_bundle_root()) / "configs", tmp_path / bundle / "configs")
        (tmp_path / bundle / "models").mkdir()
    (tmp_path / "corrupt" / "models" / "model.pt").write_bytes(b"\x80\x02 not a checkpoint")
    (tmp_path / "corrupt" / "models" / "scm.pt").write_bytes(b"")
    torch.save(BasicUNet(2, 1, 1, features=TINY_FEATURES).state_dict(), tmp_path / "wrong" / "models" / "model.pt")
    torch.save(BasicUNet(2, 1, 1, features=TINY_FEATURES).state_dict(), tmp_path / "wrong" / "models" / "scm.pt")
    return tmp_path


TRAIN = ["train", "image.tif", "label.tif", "--output", "run"]
CASES = {
    "missing file": (["segment", "nope.tif", "out.tif"], ["does not exist", "nope.tif"]),
    "folder instead of a file": (["segment", "a_folder.tif", "out.tif"], ["folder", "a_folder.tif"]),
    "empty file": (["segment", "empty.tif", "out.tif"], ["empty", "empty.tif"]),
    "truncated TIFF": (["segment", "truncated.tif", "out.tif"], ["truncated or corrupt", "truncated.tif"]),
    "PNG renamed .tif": (["segment", "png.tif", "out.tif"], ["not a TIFF", "png.tif"]),
    "2D image": (["segment", "flat.tif", "out.tif"], ["2D image", "flat.tif"]),
    "4D stack": (["segment", "four_d.nii.gz", "out.tif"], ["4D", "(4, 32, 32, 2)"]),
    "RGB stack": (["segment", "rgb.tif", "out.tif"], ["RGB", "rgb.tif"]),
    "NaN in a float image": (["segment", "nan.tif", "out.tif"], ["NaN or inf", "nan.tif"]),
    "inf in a float image": (["evaluate", "inf.tif", "label.tif"], ["NaN or inf", "inf.tif"]),
    "image and label shapes differ": (
        ["train", "image.tif", "short_label.tif", "--labeled", "0", "--output", "run"],
        ["(6, 32, 32)", "(12, 32, 32)"],
    ),
    "label values not 0/1 or 0/255": (
        ["train", "image.tif", "grey_label.tif", "--labeled", "0", "--output", "run"],
        ["values 7 found"],
    ),
    "label values 1, 2, 3, 255": (["evaluate", "multi_label.tif", "label.tif"], ["1, 2, 3"]),
    "labeled slices outside the stack": ([*TRAIN, "--labeled", "0,40"], ["[40]", "12 slices"]),
    "labeled slices select nothing": ([*TRAIN, "--labeled", "none"], ["select no slice", "'none'"]),
    "labeled-slice spec unreadable": ([*TRAIN, "--labeled", "every:x"], ["every:x"]),
    "SCM window even": ([*TRAIN, "--labeled", "0", "--window", "4"], ["odd", "got 4"]),
    "SCM window below 1": ([*TRAIN, "--labeled", "0", "--window", "-1"], ["got -1"]),
    "voxel size of zero": ([*TRAIN, "--labeled", "0", "--voxel-size", "0,5,5"], ["voxel size", "'0,5,5'"]),
    "voxel size not numbers": ([*TRAIN, "--labeled", "0", "--voxel-size", "thick"], ["voxel size", "'thick'"]),
    "intensity probability above 1": (
        [*TRAIN, "--labeled", "0", "--intensity-prob", "1.5"],
        ["--intensity-prob", "got 1.5"],
    ),
    "use-scm neither auto, true nor false": (
        [*TRAIN, "--labeled", "0", "--use-scm", "maybe"],
        ["--use-scm", "'maybe'"],
    ),
    "output folder does not exist": (["segment", "image.tif", "no_dir/out.tif"], ["does not exist", "no_dir"]),
    "output exists": (["segment", "image.tif", "existing.tif"], ["exists", "existing.tif"]),
    "--scm with --no-scm": (["segment", "image.tif", "out.tif", "--scm", "--no-scm"], ["--no-scm and --scm"]),
    "negative smoothing": (["segment", "image.tif", "out.tif", "--smoothing", "-1"], ["smoothing must be", "got -1"]),
    "Z smoothing not a number": (
        ["segment", "image.tif", "out.tif", "--smoothing-z", "flat"],
        ["smoothing_z must be a number", "'flat'"],
    ),
    "segment on a missing GPU": (["segment", "image.tif", "out.tif", "--device", "cuda"], ["'cuda'", "use cpu"]),
    "masks to a picture format": (["segment", "image.tif", "out.png"], ["unsupported output format '.png'", "out.png"]),
    "report exists": (["evaluate", "label.tif", "label.tif", "--csv", "existing.tif"], ["exists", "existing.tif"]),
    "training output is a file": (
        ["train", "image.tif", "label.tif", "--labeled", "0", "--output", "existing.tif"],
        ["is a file", "existing.tif"],
    ),
    "corrupt checkpoint": (["segment", "image.tif", "out.tif", "--models", "corrupt"], ["cannot read", "model.pt"]),
    "checkpoint of another network": (
        ["segment", "image.tif", "out.tif", "--models", "wrong"],
        ["model.pt", "features (4, 4, 8, 8, 16, 4)", "features (16, 16, 32, 64, 128, 16)"],
    ),
    "not a bundle folder": (["segment", "image.tif", "out.tif", "--models", "a_folder.tif"], ["not a bundle"]),
    "device that does not exist": (
        ["train", "image.tif", "label.tif", "--labeled", "0", "--output", "run", "--device", "cuda:7"],
        ["cuda:7"],
    ),
}


def snapshot(folder):
    """Every path under ``folder`` with its content's hash (None for folders)."""
    import hashlib

    return {
        p.relative_to(folder): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_and_no_output(files, case, capsys):
    argv, expected = CASES[case]
    before = snapshot(files)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (case, err)
    assert len(err) == 1 and err[0].startswith(f"emseg {argv[0]}: error: "), err
    for text in expected:
        assert text in err[0], (case, text, err[0])
    assert snapshot(files) == before  # nothing added, removed or changed


def test_debug_shows_the_traceback(files):
    from emseg_monai.errors import InputError
    from emseg_monai.errors import find_cause as _find

    with pytest.raises(Exception) as info:
        main(["--debug", "segment", "nope.tif", "out.tif"])
    assert "does not exist" in str(_find(info.value, InputError))


def test_unwritable_output_folder(files, capsys):
    """A place that cannot be written to: a path under a file (real as root too, so it runs in CI),
    and, for an ordinary user, a folder without write permission (root writes anywhere)."""
    before = snapshot(files)
    assert main(["segment", "image.tif", "existing.tif/out.tif"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "output folder is a file, not a folder: existing.tif" in err[0], err
    assert snapshot(files) == before
    if os.name != "posix" or os.geteuid() == 0:
        return
    locked = files / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["segment", "image.tif", "locked/out.tif"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not writable" in err[0] and "locked" in err[0]
    finally:
        locked.chmod(0o700)
