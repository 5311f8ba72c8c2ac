"""Tests for emseg_monai.data.slices: labeled-slice specs, complement and evenly spaced picks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emseg_monai.data.slices import complement, evenly_spaced, parse_slice_spec
from emseg_monai.errors import InputError


@pytest.mark.parametrize(
    ("spec", "n_slices", "expected"),
    [
        ("every:5", 12, [0, 5, 10]),
        ("every:1", 4, [0, 1, 2, 3]),
        ("every:10", 25, [0, 10, 20]),
        ("0:20:5", 30, [0, 5, 10, 15]),
        ("2:9:3", 12, [2, 5, 8]),
        ("::5", 12, [0, 5, 10]),
        ("5:", 8, [5, 6, 7]),
        (":3", 8, [0, 1, 2]),
        ("0:12", 12, list(range(12))),
        ("7", 12, [7]),
        ("1,3,2", 12, [1, 2, 3]),
        ("3, 1 ,3,", 12, [1, 3]),
        ("0:4, 10, every:7", 12, [0, 1, 2, 3, 7, 10]),
        ("every:4,2:4", 12, [0, 2, 3, 4, 8]),
        ("all", 4, [0, 1, 2, 3]),
        (" ALL ", 3, [0, 1, 2]),
        ("none", 4, []),
        ("None", 4, []),
        (3, 12, [3]),
        (np.int64(0), 1, [0]),
        ([4, 1, 4, 0], 12, [0, 1, 4]),
        ((2, 2), 12, [2]),
        (np.array([9, 3]), 12, [3, 9]),
    ],
)
def test_parse_slice_spec_forms(spec, n_slices, expected):
    out = parse_slice_spec(spec, n_slices)
    assert out.dtype == np.int64
    assert out.tolist() == expected


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.integers(0, n - 1), min_size=1))))
def test_parse_slice_spec_list_is_sorted_unique(case):
    n_slices, items = case
    out = parse_slice_spec(items, n_slices)
    assert out.tolist() == sorted(set(items))
    text = parse_slice_spec(",".join(map(str, items)), n_slices)
    np.testing.assert_array_equal(text, out)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("12", r"labeled slices \[12\] are outside the stack of 12 slices \(0\.\.11\)"),
        ("-1", r"labeled slices \[-1\] are outside the stack"),
        ("-3:2", r"labeled slices \[-3, -2, -1\] are outside"),
        (12, r"\[12\] are outside"),
        ([0, 15, -2], r"labeled slices \[15, -2\] are outside"),
    ],
)
def test_parse_slice_spec_out_of_range(spec, message):
    with pytest.raises(InputError, match=message):
        parse_slice_spec(spec, 12)


@pytest.mark.parametrize("spec", ["3:1", "1:-1", "1:2:-1", "", ",", []])
def test_parse_slice_spec_empty_selection(spec):
    with pytest.raises(InputError, match=r"selects no slice of a stack of 12 slices"):
        parse_slice_spec(spec, 12)


@pytest.mark.parametrize(
    ("spec", "item"),
    [
        ("a,b", "a"),
        ("1,x", "x"),
        ("1:2:0", "1:2:0"),
        ("1:2:3:4", "1:2:3:4"),
        ("every:0", "every:0"),
        ("every:x", "every:x"),
        ("every:-2", "every:-2"),
        ("1.5", "1.5"),
    ],
)
def test_parse_slice_spec_malformed(spec, item):
    with pytest.raises(InputError, match=f"cannot parse labeled-slice spec '{spec}' \\(bad item '{item}'\\)"):
        parse_slice_spec(spec, 12)


@pytest.mark.parametrize("spec", [None, ["a"], [[1, 2]], 2.5j])
def test_parse_slice_spec_wrong_type(spec):
    with pytest.raises(InputError, match="must be a string or a list of integers"):
        parse_slice_spec(spec, 12)


def test_parse_slice_spec_range_past_the_end_says_so():
    with pytest.raises(InputError, match="reaches outside the stack of 12 slices"):
        parse_slice_spec("0:20:5", 12)


def test_parse_slice_spec_range_past_the_end_is_an_error():
    with pytest.raises(InputError, match="'0:20:5'"):
        parse_slice_spec("0:20:5", 12)


def test_complement():
    assert complement(np.array([0, 3, 4]), 6).tolist() == [1, 2, 5]
    assert complement(np.zeros(0, np.int64), 3).tolist() == [0, 1, 2]
    assert complement(np.arange(4), 4).tolist() == []
    assert complement([2, 2], 3).dtype == np.int64


def test_complement_of_spec_partitions_stack():
    labeled = parse_slice_spec("every:3", 10)
    rest = complement(labeled, 10)
    assert sorted(labeled.tolist() + rest.tolist()) == list(range(10))
    assert not set(labeled.tolist()) & set(rest.tolist())


@pytest.mark.parametrize(
    ("n_labels", "n_slices", "expected"),
    [
        (1, 10, [0]),
        (2, 10, [0, 9]),
        (3, 9, [0, 4, 8]),
        (5, 5, [0, 1, 2, 3, 4]),
        (4, 100, [0, 33, 66, 99]),
    ],
)
def test_evenly_spaced(n_labels, n_slices, expected):
    out = evenly_spaced(n_labels, n_slices)
    assert out.dtype == np.int64
    assert out.tolist() == expected


@pytest.mark.parametrize(("n_labels", "n_slices"), [(0, 10), (-1, 10), (11, 10), (1, 0)])
def test_evenly_spaced_out_of_range(n_labels, n_slices):
    with pytest.raises(InputError, match=f"must be in 1\\.\\.{n_slices}, got {n_labels}"):
        evenly_spaced(n_labels, n_slices)
