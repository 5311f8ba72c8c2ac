from pathlib import Path

import pytest

from emseg_monai.data import make_synthetic_stack
from emseg_monai.io import write_stack

TINY_FEATURES = [4, 4, 8, 8, 16, 4]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A folder with image.tif / label.tif (12 x 32 x 32) and test_image.tif / test_label.tif."""
    folder = tmp_path_factory.mktemp("data")
    for prefix, seed in (("", 0), ("test_", 1)):
        image, label = make_synthetic_stack((12, 32, 32), seed=seed)
        write_stack(folder / f"{prefix}image.tif", image)
        write_stack(folder / f"{prefix}label.tif", label)
    return folder
