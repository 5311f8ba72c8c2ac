from pathlib import Path

import numpy as np
import pytest

from emseg_monai.data import make_synthetic_stack
from emseg_monai.io import write_stack

TINY_FEATURES = [4, 4, 8, 8, 16, 4]
FEATURES = ",".join(map(str, TINY_FEATURES))
TRAIN_ARGS = [
    "--labeled",
    "every:3",
    "--epochs",
    "1",
    "--scm-epochs",
    "1",
    "--iterations",
    "2",
    "--batch-size",
    "2",
    "--crop-size",
    "32",
    "--downsample",
    "1",
    "--features",
    FEATURES,
    "--window",
    "3",
    "--min-size",
    "4",
    "--spread-min-size",
    "4",
    "--erosions-per-step",
    "1",
    "--device",
    "cpu",
    "--use-scm",
    "true",  # the tests of the SCM path need it whatever the MPP check decides on 12 slices
]


def train_argv(data, out, *extra):
    """``emseg train`` arguments for a tiny run on ``data``/image.tif and label.tif into ``out``."""
    return ["train", str(data / "image.tif"), str(data / "label.tif"), "--output", str(out), *TRAIN_ARGS, *extra]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A folder with image.tif / label.tif (12 x 32 x 32) and test_image.tif / test_label.tif."""
    folder = tmp_path_factory.mktemp("data")
    for prefix, seed in (("", 0), ("test_", 1)):
        image, label = make_synthetic_stack((12, 32, 32), seed=seed)
        write_stack(folder / f"{prefix}image.tif", image)
        write_stack(folder / f"{prefix}label.tif", label)
    return folder


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A training run of ``emseg train`` on ``tiny_data`` (a bundle folder); read it, never change it."""
    from emseg_monai.cli import main

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    assert main(["--quiet", *train_argv(tiny_data, out)]) == 0
    return out


def shifted_stack() -> np.ndarray:
    """(6, 48, 48) uint8: a textured plane whose sections alternate between two positions 8.5 px
    apart (shift (6, 6)), so every neighbouring pair measures 8.5 px (``io.alignment``)."""
    plane = np.tile(np.arange(48, dtype=np.uint8)[None] * 5, (48, 1)) ^ np.arange(48, dtype=np.uint8)[:, None] * 3
    return np.stack([np.roll(plane, m, axis=(0, 1)) for m in [(0, 0), (6, 6)] * 3])
