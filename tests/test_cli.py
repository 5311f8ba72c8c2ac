import subprocess
import sys

import numpy as np
import pytest

from emseg_monai.cli import main
from emseg_monai.io import read_mask, read_stack, write_stack
from tests.conftest import TINY_FEATURES, TRAIN_ARGS, train_argv  # noqa: F401 (re-exported)


def one_line_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def trained(tiny_run):
    return tiny_run


def test_train_leaves_a_bundle_whose_defaults_are_the_trained_settings(trained):
    import json

    from emseg_monai.training.bundle import config_defaults

    for name in ("models/model.pt", "models/scm.pt", "configs/metadata.json", "docs/README.md", "LICENSE"):
        assert (trained / name).is_file(), name
    assert not (trained / "models" / "emseg.json").exists()  # no side file: the configs carry the settings
    inference = config_defaults(trained / "configs" / "inference.yaml")
    assert inference["scm_window"] == 3 and inference["stage1_features"] == TINY_FEATURES
    assert config_defaults(trained / "configs" / "train.yaml")["epochs"] == 1
    meta = json.loads((trained / "configs" / "metadata.json").read_text())
    assert meta["scm_network_data_format"]["inputs"]["image"]["num_channels"] == 3
    assert meta["version"] in meta["changelog"] and 0 <= meta["eval_metrics"]["val_mean_dice"] <= 1
    assert "## Performance" in (trained / "docs" / "README.md").read_text()


def segment_args(trained, tiny_data, out, *extra):
    return [
        "--quiet",
        "segment",
        str(tiny_data / "test_image.tif"),
        str(out),
        "--models",
        str(trained / "models"),
        *extra,
    ]


def test_segment_then_evaluate(trained, tiny_data, tmp_path, capsys):
    out = tmp_path / "masks.tif"
    assert main(segment_args(trained, tiny_data, out, "--device", "cpu")) == 0
    masks = read_stack(out)
    assert masks.shape == read_stack(tiny_data / "test_image.tif").shape and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 255}
    capsys.readouterr()
    csv = tmp_path / "per_slice.csv"
    assert main(["evaluate", str(out), str(tiny_data / "test_label.tif"), "--csv", str(csv)]) == 0
    assert "Dice" in capsys.readouterr().out
    assert len(csv.read_text().splitlines()) == 13


def test_segment_refuses_existing_output(trained, tiny_data, tmp_path, capsys):
    out = tmp_path / "masks.tif"
    out.write_bytes(b"keep me")
    one_line_error(
        capsys,
        ["segment", str(tiny_data / "test_image.tif"), str(out), "--models", str(trained / "models")],
        "output exists",
    )
    assert out.read_bytes() == b"keep me"


def test_segment_stage1_flips_feed_the_scm_the_flip_average(trained, tiny_data, tmp_path, capsys):
    """--stage1-flips true: the stage-1 probabilities the SCM reads are those stage 1 alone gives with --flips."""
    fed, alone = tmp_path / "fed.tif", tmp_path / "alone.tif"
    assert main(segment_args(trained, tiny_data, fed, "--stage1-flips", "true", "--save-stage1")) == 0
    assert main(segment_args(trained, tiny_data, alone, "--no-scm", "--flips", "--save-stage1")) == 0
    flipped = read_stack(tmp_path / "fed_stage1_prob.tif")
    np.testing.assert_array_equal(flipped, read_stack(tmp_path / "alone_stage1_prob.tif"))
    plain = tmp_path / "plain.tif"
    assert main(segment_args(trained, tiny_data, plain, "--save-stage1")) == 0  # the tiny run's default: one pass
    assert not np.array_equal(flipped, read_stack(tmp_path / "plain_stage1_prob.tif"))
    capsys.readouterr()
    bad = segment_args(trained, tiny_data, tmp_path / "bad.tif", "--stage1-flips", "often")[1:]
    one_line_error(capsys, bad, "stage1_flips must be true or false (or 1/0), got 'often'")
    assert not (tmp_path / "bad.tif").exists()


def test_segment_stage1_only(trained, tiny_data, tmp_path):
    out = tmp_path / "s1.nii.gz"
    assert main(segment_args(trained, tiny_data, out, "--no-scm")) == 0
    assert read_mask(out).shape == (12, 32, 32)


def test_bad_inputs_give_one_line(tiny_data, tmp_path, capsys):
    image, label = str(tiny_data / "image.tif"), str(tiny_data / "label.tif")
    one_line_error(capsys, ["segment", str(tmp_path / "nope.tif"), str(tmp_path / "o.tif")], "does not exist")
    one_line_error(capsys, ["segment", image, str(tmp_path / "missing_dir" / "o.tif")], "folder does not exist")
    one_line_error(capsys, ["segment", image, str(tmp_path / "o.tif"), "--models", str(tmp_path)], "not a bundle")
    write_stack(tmp_path / "two.tif", np.zeros((2, 1, 32, 32), np.uint8)[:, 0])
    flat = tmp_path / "flat.tif"
    import tifffile

    tifffile.imwrite(flat, np.zeros((32, 32), np.uint8))
    out = str(tmp_path / "run")
    one_line_error(capsys, ["train", str(flat), label, "--labeled", "0", "--output", out], "2D image")
    one_line_error(
        capsys, ["train", image, str(tmp_path / "two.tif"), "--labeled", "0", "--output", out], "expected (12, 32, 32)"
    )
    one_line_error(capsys, ["train", image, label, "--labeled", "0,40", "--output", out], "[40]")
    one_line_error(capsys, ["train", image, label, "--labeled", "0", "--window", "4", "--output", out], "got 4")
    write_stack(tmp_path / "grey.tif", np.full((12, 32, 32), 7, np.uint8))
    one_line_error(
        capsys, ["train", image, str(tmp_path / "grey.tif"), "--labeled", "0", "--output", out], "values 7 found"
    )
    assert not (tmp_path / "run").exists()


def test_train_refuses_non_empty_output(tiny_data, tmp_path, capsys):
    (tmp_path / "old.txt").write_text("results")
    one_line_error(
        capsys,
        [
            "train",
            str(tiny_data / "image.tif"),
            str(tiny_data / "label.tif"),
            "--labeled",
            "0",
            "--output",
            str(tmp_path),
        ],
        "not empty",
    )
    assert (tmp_path / "old.txt").read_text() == "results"


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "emseg_monai.cli", "evaluate", str(tmp_path / "a.tif"), str(tmp_path / "b.tif")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("emseg evaluate: error: stack file does not exist")


def test_segment_with_shipped_bundle_weights(tiny_data, tmp_path):
    from emseg_monai import default_bundle_root
    from emseg_monai.training.bundle import config_defaults

    shipped = config_defaults(f"{default_bundle_root()}/configs/inference.yaml")
    assert shipped["stage1_downsample"] == shipped["scm_downsample"] == 2  # as the shipped weights were trained
    out = tmp_path / "masks.tif"
    assert main(["--quiet", "segment", str(tiny_data / "test_image.tif"), str(out)]) == 0
    assert read_mask(out).shape == (12, 32, 32)


def test_evaluate_draws_overlay_and_dice_plot(tiny_data, tmp_path, capsys):
    label, image = str(tiny_data / "test_label.tif"), str(tiny_data / "test_image.tif")
    overlay, plot = tmp_path / "o.png", tmp_path / "d.png"
    assert main(["evaluate", label, label, "--image", image, "--overlay", str(overlay), "--dice-plot", str(plot)]) == 0
    assert "Dice 100.00%" in capsys.readouterr().out
    assert overlay.stat().st_size > 0 and plot.stat().st_size > 0
    one_line_error(capsys, ["evaluate", label, label, "--overlay", str(tmp_path / "x.png")], "needs --image")
    one_line_error(
        capsys,
        ["evaluate", label, label, "--image", image, "--overlay", str(tmp_path / "y.png"), "--overlay-slice", "99"],
        "outside the stack",
    )
