"""The examples in the transforms' docstrings run and give what they show."""

import doctest
import importlib

import pytest

MODULES = ["emseg_monai.transforms.mpp", "emseg_monai.transforms.piecewise_affine", "emseg_monai.transforms.windows"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
