"""The bundle is the product: the plain bundle command, MONAI's workflow API, ``emseg`` and the Python
API give the same masks, for the shipped bundle and for a freshly trained run, with no override."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow, create_workflow
from monai.networks.nets import BasicUNet

from emseg_monai import default_bundle_root
from emseg_monai.cli import main
from emseg_monai.data import make_synthetic_stack
from emseg_monai.inference import InferenceSettings, segment, to_backend
from emseg_monai.io import read_mask, read_stack, write_stack
from emseg_monai.networks import load_weights
from emseg_monai.training.bundle import config_defaults
from emseg_monai.workflows import run_config

SHIPPED = default_bundle_root()


def bundle_run(config, cwd, *overrides):
    """``python -m monai.bundle run --config_file CONFIG ...`` from ``cwd``, as a user types it."""
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config), *map(str, overrides)]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


def emseg(*argv):
    assert main(["--quiet", *map(str, argv)]) == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """An 8 x 96 x 112 synthetic EM stack of 5 nm voxels (the shipped weights run it at 48 x 56).

    The voxel size is recorded: without it this stack's image reads as sections 6.5x as thick as
    its pixels (io.anisotropy: the synthetic background is smoother in Y and X than in Z), and the
    shipped weights would rightly skip the SCM that these tests compare against.
    """
    path = tmp_path_factory.mktemp("stack") / "stack.tif"
    image, _ = make_synthetic_stack((8, 96, 112), seed=5)
    write_stack(path, image, voxel_size=(5.0, 5.0, 5.0))
    return path


def test_trained_run_plain_bundle_command_equals_emseg_segment(tiny_run, tiny_data, tmp_path):
    image = tiny_data / "test_image.tif"
    proc = bundle_run(
        tiny_run / "configs" / "inference.yaml", tmp_path, "--image_file", image, "--output_file", "b.tif"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    emseg("segment", image, tmp_path / "cli.tif", "--models", tiny_run)
    bundle = read_stack(tmp_path / "b.tif")
    np.testing.assert_array_equal(bundle, read_stack(tmp_path / "cli.tif"))

    # the Python API with the settings the run's config holds gives them too
    trained = config_defaults(tiny_run / "configs" / "inference.yaml")
    nets = [
        load_weights(BasicUNet(2, channels, 1, features=trained[key]), tiny_run / "models" / name)
        for channels, key, name in (
            (1, "stage1_features", "model.pt"),
            (trained["scm_window"], "scm_features", "scm.pt"),
        )
    ]
    settings = InferenceSettings(
        window=trained["scm_window"],
        input_kind=trained["scm_input"],
        stage1_downsample=trained["stage1_downsample"],
        scm_downsample=trained["scm_downsample"],
    )
    api = segment(read_stack(image), *(to_backend(n) for n in nets), settings, progress=False)
    np.testing.assert_array_equal(api["final_mask"], bundle)


def test_shipped_bundle_plain_command_equals_emseg_segment(stack, tmp_path):
    config = f"{SHIPPED}/configs/inference.yaml"
    proc = bundle_run(config, tmp_path, "--image_file", stack, "--output_file", tmp_path / "b.tif")
    assert proc.returncode == 0, proc.stderr[-3000:]
    emseg("segment", stack, tmp_path / "cli.tif")
    bundle = read_mask(tmp_path / "b.tif")
    np.testing.assert_array_equal(bundle, read_mask(tmp_path / "cli.tif"))
    assert 0.02 < bundle.mean() < 0.6  # the synthetic mitochondria are found, not nothing or everything


def test_booleans_on_the_bundle_command_line_mean_what_they_say(stack, tmp_path):
    config = f"{SHIPPED}/configs/inference.yaml"
    keep = tmp_path / "keep.tif"
    keep.write_bytes(b"precious")
    proc = bundle_run(config, tmp_path, "--image_file", stack, "--output_file", keep, "--overwrite", "false")
    assert proc.returncode != 0 and "output exists" in proc.stderr
    assert keep.read_bytes() == b"precious"

    proc = bundle_run(config, tmp_path, "--image_file", stack, "--output_file", "s1.tif", "--use_scm", "false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    emseg("segment", stack, tmp_path / "cli_s1.tif", "--no-scm")
    emseg("segment", stack, tmp_path / "cli_final.tif")
    stage1 = read_mask(tmp_path / "s1.tif")
    np.testing.assert_array_equal(stage1, read_mask(tmp_path / "cli_s1.tif"))
    assert not np.array_equal(stage1, read_mask(tmp_path / "cli_final.tif"))  # the SCM does change them

    proc = bundle_run(config, tmp_path, "--image_file", stack, "--output_file", "x.tif", "--flips", "maybe")
    assert proc.returncode != 0 and "flips must be true or false (or 1/0), got 'maybe'" in proc.stderr
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.parametrize("text", ["false", "False", "0", False])
def test_mpp_bracket_vote_false_spellings(tiny_run, tiny_data, tmp_path, text):
    """Overrides arrive as strings from the command line; every spelling of false switches the vote off."""
    common = {"label_file": str(tiny_data / "label.tif"), "labeled_slices": "every:3", "min_size": 4}
    common["mask_file"] = str(tiny_run / "stage1_mask.tif")
    run_config(["mpp.yaml"], **common, output_file=str(tmp_path / "on.tif"), bracket_vote="true")
    run_config(["mpp.yaml"], **common, output_file=str(tmp_path / "off.tif"), bracket_vote=False)
    run_config(["mpp.yaml"], **common, output_file=str(tmp_path / "text.tif"), bracket_vote=text)
    off = read_mask(tmp_path / "off.tif")
    np.testing.assert_array_equal(read_mask(tmp_path / "text.tif"), off)
    assert not np.array_equal(read_mask(tmp_path / "on.tif"), off)


def test_create_workflow_runs_a_trained_run(tiny_run, tiny_data, tmp_path):
    workflow = create_workflow(
        config_file=str(tiny_run / "configs" / "inference.yaml"),
        workflow_type="inference",
        logging_file=False,
        image_file=str(tiny_data / "test_image.tif"),
        output_file=str(tmp_path / "wf.tif"),
    )
    assert workflow.check_properties() == []
    assert workflow.bundle_root == str(tiny_run.resolve())  # found from the config file, no override
    assert isinstance(workflow.network_def, torch.nn.Module) and workflow.inferer.settings.window == 3
    workflow.run()
    workflow.finalize()
    emseg("segment", tiny_data / "test_image.tif", tmp_path / "cli.tif", "--models", tiny_run)
    np.testing.assert_array_equal(read_stack(tmp_path / "wf.tif"), read_stack(tmp_path / "cli.tif"))


@pytest.mark.parametrize("configs", [["train.yaml"], ["train.yaml", "scm_train.yaml"]])
def test_training_configs_have_the_train_workflow_properties(tiny_run, tiny_data, configs):
    workflow = ConfigWorkflow(
        config_file=[str(tiny_run / "configs" / c) for c in configs],
        workflow_type="train",
        logging_file=False,
        dataset_dir=str(tiny_data),
        output_dir=str(tiny_run),  # SCM training reads the run's stage-1 and MPP files
        device="cpu",
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    assert workflow.max_epochs == 1  # the run's own defaults


def test_weights_that_do_not_fit_the_config_name_both(tiny_run, tiny_data, tmp_path):
    image = tiny_data / "test_image.tif"
    config = tiny_run / "configs" / "inference.yaml"
    proc = bundle_run(config, tmp_path, "--image_file", image, "--output_file", "o.tif", "--scm_window", "5")
    assert proc.returncode != 0
    assert "scm.pt do not fit the network of the config: it holds a BasicUNet with 3 input channel(s)" in proc.stderr
    assert "the config builds one with 5 input channel(s)" in proc.stderr
    assert not (tmp_path / "o.tif").exists()
