"""Each bundle config run through ConfigWorkflow with tiny overrides, in pipeline order."""

from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

from emseg_monai.io import read_mask, read_stack
from tests.conftest import TINY_FEATURES

CONFIGS = Path(__file__).resolve().parent.parent / "bundle" / "configs"
TRAIN = {
    "epochs": 2,
    "iterations_per_epoch": 2,
    "batch_size": 2,
    "crop_size": 32,
    "downsample": 1,
    "val_interval": 1,
    "features": TINY_FEATURES,
    "labeled_slices": "every:3",
    "device": "cpu",
}


def run(names, workflow_type=None, **overrides):
    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / n) for n in names],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    assert not workflow.check_properties()
    result = workflow.run()
    workflow.finalize()
    return result


@pytest.fixture(scope="module")
def pipeline(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle_run")
    common = {"dataset_dir": str(tiny_data), "output_dir": str(out)}
    models = {"ckpt_dir": str(out / "models")}
    run(["train.yaml"], "train", **common, **TRAIN)
    run(
        ["inference.yaml", "stage1_infer.yaml"],
        **common,
        **models,
        stage1_features=TINY_FEATURES,
        stage1_downsample=1,
        device="cpu",
    )
    run(["mpp.yaml"], **common, labeled_slices="every:3", min_size=4, spread_min_size=4, erosions_per_step=1)
    run(["train.yaml", "scm_train.yaml"], "train", **common, **TRAIN, scm_window=3)
    run(
        ["inference.yaml"],
        **common,
        **models,
        image_file=str(tiny_data / "test_image.tif"),
        stage1_features=TINY_FEATURES,
        scm_features=TINY_FEATURES,
        stage1_downsample=1,
        scm_downsample=1,
        scm_window=3,
        device="cpu",
        save_stage1=True,
    )
    run(["evaluate.yaml"], **common, label_file=str(tiny_data / "test_label.tif"))
    return out


def test_stage1_training_writes_weights(pipeline):
    assert (pipeline / "models" / "model.pt").is_file()


def test_stage1_inference_writes_probabilities_and_masks(pipeline, tiny_data):
    prob = read_stack(pipeline / "stage1_prob.tif")
    mask = read_stack(pipeline / "stage1_mask.tif")
    assert prob.shape == mask.shape == read_stack(tiny_data / "image.tif").shape
    assert prob.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask > 0, prob >= 128)


def test_mpp_targets_keep_labeled_slices(pipeline, tiny_data):
    targets = read_mask(pipeline / "mpp_mask.tif")
    truth = read_mask(tiny_data / "label.tif")
    np.testing.assert_array_equal(targets[::3], truth[::3])


def test_scm_training_and_inference(pipeline, tiny_data):
    assert (pipeline / "models" / "scm.pt").is_file()
    final = read_stack(pipeline / "final_mask.tif")
    assert final.shape == read_stack(tiny_data / "test_image.tif").shape and final.dtype == np.uint8
    assert (pipeline / "final_mask_stage1_prob.tif").is_file()


def test_evaluate_writes_reports(pipeline):
    assert (pipeline / "per_slice.csv").read_text().startswith("slice,dice,iou")
    assert '"dice"' in (pipeline / "scores.json").read_text()


def test_training_without_validation_saves_final_weights(tiny_data, tmp_path):
    run(
        ["train.yaml"],
        "train",
        dataset_dir=str(tiny_data),
        output_dir=str(tmp_path),
        **{**TRAIN, "epochs": 1},
        val_slices="none",
    )
    assert (tmp_path / "models" / "model.pt").is_file()
