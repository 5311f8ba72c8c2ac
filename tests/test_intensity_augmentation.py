"""Stage 1's random intensity changes (``intensity_prob`` in train.yaml): image only, off by the SCM."""

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from emseg_monai import default_bundle_root
from emseg_monai.errors import InputError, find_cause

CONFIGS = Path(default_bundle_root()) / "configs"
INTENSITY = ["RandAdjustContrastd", "RandScaleIntensityd", "RandShiftIntensityd", "RandGaussianNoised"]
INTENSITY += ["RandGaussianSmoothd"]  # in the order train.yaml applies them


def augmentation(prob, *overlays, gamma=None):
    """The parsed ``train#augmentation`` list with ``intensity_prob = prob`` (None: the configs' value)."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), *(str(CONFIGS / name) for name in overlays)])
    if prob is not None:
        parser["intensity_prob"] = prob
    if gamma is not None:
        parser["intensity_gamma"] = gamma
    return parser.get_parsed_content("train#augmentation")


def sample(seed=0):
    """One (1, 64, 64) float image in [0, 1] with a square label."""
    rng = np.random.default_rng(seed)
    label = np.zeros((1, 64, 64), np.float32)
    label[:, 20:40, 24:44] = 1
    return {"image": torch.from_numpy(rng.random((1, 64, 64), dtype=np.float32)), "label": torch.from_numpy(label)}


def intensity_only(transforms):
    """The intensity transforms of an augmentation list, in order."""
    return [t for t in transforms if type(t).__name__ in INTENSITY]


def test_shipped_stage1_and_scm_values():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.yaml"))
    assert 0.0 <= float(parser["intensity_prob"]) <= 1.0
    assert [type(t).__name__ for t in intensity_only(augmentation(None))] == INTENSITY
    scm = intensity_only(augmentation(None, "scm_train.yaml"))
    assert all(t.prob == 0.0 for t in scm)  # the SCM's inputs are probabilities


def test_intensity_changes_touch_the_image_not_the_label():
    chain = Compose(intensity_only(augmentation(1.0)))
    chain.set_random_state(3)
    data = sample()
    out = chain({k: v.clone() for k, v in data.items()})
    assert out["image"].shape == (1, 64, 64)
    assert torch.isfinite(out["image"]).all()
    assert not torch.allclose(out["image"], data["image"])
    assert torch.equal(torch.as_tensor(out["label"]), data["label"])


def test_probability_zero_leaves_the_image_as_is():
    chain = Compose(intensity_only(augmentation(0.0)))
    chain.set_random_state(3)
    data = sample()
    out = chain({k: v.clone() for k, v in data.items()})
    assert torch.equal(torch.as_tensor(out["image"]), data["image"])


def test_geometric_transforms_draw_the_same_with_or_without_intensity_changes():
    # the intensity changes come last, so the warps of a seeded run do not depend on intensity_prob
    results = []
    for prob in (0.0, 1.0):
        transforms = augmentation(prob)
        chain = Compose(transforms)
        chain.set_random_state(7)
        out = chain(sample())
        results.append(torch.as_tensor(out["label"]))
    assert torch.equal(results[0], results[1])


def test_gamma_range_reaches_the_contrast_curve():
    contrast = intensity_only(augmentation(1.0, gamma=[0.5, 2.0]))[0]
    assert tuple(contrast.adjuster.gamma) == (0.5, 2.0)


@pytest.mark.parametrize("bad", [[2.0, 0.5], [0.0, 1.0], "steep"])
def test_bad_gamma_range_is_one_line(bad):
    with pytest.raises(Exception) as caught:
        augmentation(1.0, gamma=bad)
    error = find_cause(caught.value, InputError)  # under MONAI's wrapping, as the CLI finds it
    assert isinstance(error, InputError)
    assert "intensity_gamma" in str(error) and repr(bad) in str(error) and "\n" not in str(error)


@pytest.mark.parametrize("bad", [1.5, -0.1, "often"])
def test_bad_probability_is_one_line(bad):
    with pytest.raises(Exception) as caught:
        augmentation(bad)
    error = find_cause(caught.value, InputError)  # under MONAI's wrapping, as the CLI finds it
    assert isinstance(error, InputError)
    assert "intensity_prob" in str(error) and str(bad) in str(error) and "\n" not in str(error)


def test_emseg_train_option_reaches_stage_1_only(tiny_data, tmp_path):
    from emseg_monai.cli import main
    from emseg_monai.training.bundle import config_defaults
    from tests.conftest import train_argv

    out = tmp_path / "run"
    assert main(["--quiet", *train_argv(tiny_data, out, "--intensity-prob", "0.3")]) == 0
    assert config_defaults(out / "configs" / "train.yaml")["intensity_prob"] == 0.3  # the run's record
    assert config_defaults(out / "configs" / "scm_train.yaml")["intensity_prob"] == 0.0
