"""Tests for emseg_monai.evaluation.metrics and emseg_monai.evaluation.report."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from emseg_monai.errors import InputError
from emseg_monai.evaluation import (
    counts,
    dice_iou,
    evaluate_files,
    markdown_table,
    per_slice_scores,
    write_per_slice_csv,
)
from emseg_monai.io import write_stack


def masks() -> tuple[np.ndarray, np.ndarray]:
    """Slice 0: tp 1, fp 1, fn 2; slice 1: both empty; slice 2: tp 0, fp 1, fn 1."""
    pred = np.zeros((3, 2, 3), bool)
    truth = np.zeros((3, 2, 3), bool)
    pred[0, 0, :2] = True
    truth[0, 0, 0] = truth[0, 1, :2] = True
    pred[2, 0, 0] = True
    truth[2, 1, 2] = True
    return pred, truth


def test_counts():
    pred, truth = masks()
    assert tuple(int(c) for c in counts(pred, truth)) == (1, 2, 3)
    tp, fp, fn = counts(pred, truth, axis=(1, 2))
    assert tp.tolist() == [1, 0, 0]
    assert fp.tolist() == [1, 0, 1]
    assert fn.tolist() == [2, 0, 1]


def test_dice_iou_hand_computed():
    pred, truth = masks()
    dice, iou = dice_iou(pred, truth)
    assert isinstance(dice, float) and isinstance(iou, float)
    assert dice == pytest.approx(2 * 1 / (2 * 1 + 2 + 3))
    assert iou == pytest.approx(1 / (1 + 2 + 3))


def test_dice_iou_identical_masks():
    pred, truth = masks()
    assert dice_iou(truth, truth) == (1.0, 1.0)


def test_dice_iou_both_empty_is_one():
    empty = np.zeros((2, 4, 4), bool)
    assert dice_iou(empty, empty) == (1.0, 1.0)


def test_dice_iou_disjoint_is_zero():
    pred = np.zeros((1, 2, 2), bool)
    truth = np.zeros((1, 2, 2), bool)
    pred[0, 0] = True
    truth[0, 1] = True
    assert dice_iou(pred, truth) == (0.0, 0.0)
    assert dice_iou(pred, np.zeros_like(truth)) == (0.0, 0.0)


def test_dice_iou_one_half():
    pred = np.array([[[1, 1, 0, 0]]], np.uint8)
    truth = np.array([[[0, 1, 1, 0]]], np.uint8) * 255
    dice, iou = dice_iou(pred, truth)
    assert dice == pytest.approx(0.5)
    assert iou == pytest.approx(1 / 3)


def test_dice_iou_slices_subset():
    pred, truth = masks()
    assert dice_iou(pred, truth, slices=[1]) == (1.0, 1.0)
    assert dice_iou(pred, truth, slices=[2]) == (0.0, 0.0)
    dice, iou = dice_iou(pred, truth, slices=np.array([0, 1]))
    assert dice == pytest.approx(2 / 5)
    assert iou == pytest.approx(1 / 4)


def test_dice_iou_shape_mismatch():
    with pytest.raises(InputError, match=r"prediction shape \(2, 4, 4\) differs from ground-truth shape \(2, 4, 5\)"):
        dice_iou(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def test_per_slice_scores():
    pred, truth = masks()
    scores = per_slice_scores(pred, truth)
    assert list(scores) == ["slice", "dice", "iou", "tp", "fp", "fn"]
    assert scores["slice"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores["dice"], [2 / 5, 1.0, 0.0])
    np.testing.assert_allclose(scores["iou"], [1 / 4, 1.0, 0.0])
    assert scores["tp"].tolist() == [1, 0, 0]
    assert scores["fp"].tolist() == [1, 0, 1]
    assert scores["fn"].tolist() == [2, 0, 1]


def test_write_per_slice_csv(tmp_path):
    pred, truth = masks()
    path = write_per_slice_csv(tmp_path / "scores.csv", pred, truth)
    assert path == tmp_path / "scores.csv"
    assert path.read_text().splitlines() == [
        "slice,dice,iou,tp,fp,fn",
        "0,0.400000,0.250000,1,1,2",
        "1,1.000000,1.000000,0,0,0",
        "2,0.000000,0.000000,0,1,1",
    ]
    assert list(tmp_path.iterdir()) == [path]


def test_write_per_slice_csv_overwrite(tmp_path):
    pred, truth = masks()
    path = tmp_path / "scores.csv"
    path.write_text("old")
    with pytest.raises(InputError, match="output exists"):
        write_per_slice_csv(path, pred, truth, overwrite=False)
    assert path.read_text() == "old"
    write_per_slice_csv(path, pred, truth)
    assert path.read_text().startswith("slice,dice")


def test_markdown_table():
    table = markdown_table([("stage 1", 0.81234, 0.7), ("SCM", 1.0, 0.999999)])
    assert table.splitlines() == [
        "| method | Dice (%) | IoU (%) |",
        "|---|---:|---:|",
        "| stage 1 | 81.23 | 70.00 |",
        "| SCM | 100.00 | 100.00 |",
    ]


def test_markdown_table_custom_header_and_empty():
    assert markdown_table([], header=("stack", "D", "J")) == "| stack | D | J |\n|---|---:|---:|"


def test_evaluate_files(tmp_path):
    pred, truth = masks()
    write_stack(tmp_path / "pred.tif", pred)
    write_stack(tmp_path / "truth.nii.gz", truth.astype(np.uint8))
    summary = evaluate_files(
        tmp_path / "pred.tif",
        tmp_path / "truth.nii.gz",
        slices="0:2",
        csv_file=tmp_path / "scores.csv",
        json_file=tmp_path / "summary.json",
    )
    assert summary["dice"] == pytest.approx(2 / 5)
    assert summary["iou"] == pytest.approx(1 / 4)
    assert summary["slices"] == 2
    assert summary["pred"] == str(tmp_path / "pred.tif")
    assert summary["truth"] == str(tmp_path / "truth.nii.gz")
    written = summary.pop("written")
    assert written == [str(tmp_path / "scores.csv"), str(tmp_path / "summary.json")]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    with (tmp_path / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["slice"] for row in rows] == ["0", "1"]  # the scored slices only
    assert [float(row["dice"]) for row in rows] == [0.4, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.tif", "scores.csv", "summary.json", "truth.nii.gz"]


def test_evaluate_files_all_slices_without_outputs(tmp_path):
    pred, truth = masks()
    write_stack(tmp_path / "pred.tif", pred)
    write_stack(tmp_path / "truth.tif", truth)
    summary = evaluate_files(tmp_path / "pred.tif", tmp_path / "truth.tif")
    assert summary["slices"] == 3
    assert summary["dice"] == pytest.approx(2 / 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.tif", "truth.tif"]


def test_evaluate_files_errors(tmp_path):
    pred, truth = masks()
    write_stack(tmp_path / "pred.tif", pred)
    write_stack(tmp_path / "small.tif", truth[:2])
    labels = truth.astype(np.uint8)
    labels[0, 0, 0] = 2
    write_stack(tmp_path / "multi.tif", labels)
    with pytest.raises(InputError, match=r"small.tif has shape \(2, 2, 3\), expected \(3, 2, 3\)"):
        evaluate_files(tmp_path / "pred.tif", tmp_path / "small.tif")
    with pytest.raises(InputError, match="multi.tif is not binary: values 0, 1, 2 found"):
        evaluate_files(tmp_path / "pred.tif", tmp_path / "multi.tif")
    with pytest.raises(InputError, match="outside the stack of 3 slices"):
        evaluate_files(tmp_path / "pred.tif", tmp_path / "pred.tif", slices="5")
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    with pytest.raises(InputError, match="output exists"):
        evaluate_files(tmp_path / "pred.tif", tmp_path / "pred.tif", json_file=summary, overwrite=False)
    assert summary.read_text() == "{}"
