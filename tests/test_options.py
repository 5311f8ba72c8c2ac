"""Settings that arrive as text are checked once, with one-line errors naming the setting and the value."""

import errno
import re

import pytest

from emseg_monai.data.training import training_size
from emseg_monai.errors import EnvironmentFault, InputError
from emseg_monai.inference import InferenceSettings
from emseg_monai.inference.jobs import _disk_faults
from emseg_monai.options import as_bool, as_float, as_int, as_range, optional_path


@pytest.mark.parametrize("value", [True, "true", "True", "TRUE", "1", 1, "yes", "on"])
def test_true_spellings(value):
    assert as_bool(value, "flag") is True


@pytest.mark.parametrize("value", [False, "false", "False", "0", 0, "no", "off", " false "])
def test_false_spellings(value):
    assert as_bool(value, "flag") is False


@pytest.mark.parametrize("value", ["maybe", "", 2, None, 0.5, [True]])
def test_anything_else_is_refused_by_name(value):
    with pytest.raises(InputError, match=re.escape(f"overwrite must be true or false (or 1/0), got {value!r}")):
        as_bool(value, "overwrite")


def test_numbers():
    assert as_int("4", "batch_size", minimum=1) == 4 and as_int(4.0, "batch_size") == 4
    with pytest.raises(InputError, match="batch_size must be an integer, got 2.5"):
        as_int(2.5, "batch_size")
    with pytest.raises(InputError, match="block_size must be at least 0, got -1"):
        as_int(-1, "block_size", minimum=0)
    with pytest.raises(InputError, match="threshold must be between 0 and 1, got 1.5"):
        as_float(1.5, "threshold", 0, 1)
    with pytest.raises(InputError, match="threshold must be a number, got 'nan'"):
        as_float("nan", "threshold")
    assert [optional_path(v) for v in (None, False, "", "false", "None", "a.csv")] == [None] * 5 + ["a.csv"]


def test_inference_settings_check_every_value_once():
    settings = InferenceSettings(window="5", flips="false", use_scm="0", threshold="0.4", tile="0")
    assert (settings.window, settings.flips, settings.use_scm, settings.threshold, settings.tile) == (
        5,
        False,
        False,
        0.4,
        0,
    )
    for bad, match in (
        ({"window": 4}, "odd integer >= 1, got 4"),
        ({"input_kind": "probs"}, "SCM input kind must be one of prob, mask, got 'probs'"),
        ({"stage1_downsample": 0.5}, "stage1_downsample must be between 1 and inf, got 0.5"),
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
        ({"backend": "fast"}, "unknown inference backend 'fast'"),
        ({"save": 1}, "unexpected keyword"),
        ({"device": "cuda:9"}, "cuda:9"),
    ):
        with pytest.raises((InputError, TypeError), match=match):
            InferenceSettings(**bad)
    assert settings.replace(threshold=0.6).threshold == 0.6 and settings.threshold == 0.4
    assert "device" not in settings.record() and settings.record()["backend"] == "auto"


def test_training_slices_too_small_for_the_resolution():
    assert training_size((5, 64, 80), 2) == (32, 40)
    with pytest.raises(InputError, match="slices of 32 x 32 px are 16 x 16 at downsample 2"):
        training_size((5, 32, 32), 2)


def test_a_full_disk_is_one_line_naming_it():
    with pytest.raises(EnvironmentFault, match="no space left on the device writing out.zarr"):
        with _disk_faults("out.zarr"):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PermissionError):  # other OS errors pass unchanged
        with _disk_faults("out.zarr"):
            raise PermissionError(errno.EACCES, "denied")


def test_as_range_accepts_pairs_and_text():
    assert as_range([0.5, 2], "gamma", 0.1, 10) == (0.5, 2.0)
    assert as_range("0.7,1.5", "gamma", 0.1, 10) == (0.7, 1.5)
    assert as_range((1, 1), "gamma", 0.1, 10) == (1.0, 1.0)


@pytest.mark.parametrize("bad", [[2, 0.5], [0.0, 1.0], [1, 20], [1], [1, 2, 3], "wide", 3, None])
def test_as_range_refuses_with_one_line(bad):
    with pytest.raises(InputError) as caught:
        as_range(bad, "intensity_gamma", 0.1, 10)
    text = str(caught.value)
    assert text.startswith("intensity_gamma must be two numbers") and repr(bad) in text and "\n" not in text
