import numpy as np
import pytest
from PIL import Image

from emseg_monai.evaluation.figures import FN_COLOR, FP_COLOR, TP_COLOR, overlay_rgb, save_dice_along_z, save_overlay


def masks():
    truth = np.zeros((8, 8), bool)
    pred = np.zeros((8, 8), bool)
    truth[:4, :4] = True  # top-left: truth
    pred[:2, :4] = True  # top half of it found
    pred[6:, 6:] = True  # a false positive
    return pred, truth


def test_overlay_colours_tp_fn_fp():
    pred, truth = masks()
    image = np.zeros((8, 8), np.uint8)
    rgb = overlay_rgb(image, pred, truth, alpha=1.0)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == TP_COLOR
    assert tuple(rgb[3, 0]) == FN_COLOR
    assert tuple(rgb[7, 7]) == FP_COLOR
    assert tuple(rgb[5, 0]) == (0, 0, 0)  # true negative keeps the grey image


def test_overlay_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        overlay_rgb(np.zeros((4, 4)), np.zeros((4, 5), bool), np.zeros((4, 4), bool))


def test_save_overlay_and_dice_plot(tmp_path):
    pred, truth = masks()
    path = save_overlay(tmp_path / "o.png", np.arange(64, dtype=np.uint8).reshape(8, 8), pred, truth, z=3)
    with Image.open(path) as picture:
        width, height = picture.size
        pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    assert width >= 600 and height >= 600  # readable whatever the slice size (an 8 x 8 slice here)
    # the slice drawn: TP green somewhere in the picture
    assert any(np.abs(pixels.astype(int) - np.array(TP_COLOR)).sum(axis=1) < 30)
    stack_pred, stack_truth = np.stack([pred, truth]), np.stack([truth, truth])
    plot = save_dice_along_z(tmp_path / "d.png", {"a": stack_pred}, stack_truth, labeled=np.array([1]))
    with Image.open(plot) as picture:
        assert picture.format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "o.png"]


def _history(path, rows):
    lines = ["epoch,iteration,loss,val_dice,lr,seconds"] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def test_curves_command_plots_both_stages(tmp_path, capsys):
    from emseg_monai.cli import main

    _history(tmp_path / "stage1_history.csv", [(1, 4, 0.9, "", 0.002, 1.0), (2, 8, 0.7, 0.81, 0.001, 2.0)])
    _history(tmp_path / "scm_history.csv", [(1, 4, 0.5, "", 0.002, 1.0)])
    assert main(["curves", str(tmp_path)]) == 0
    with Image.open(tmp_path / "training_curves.png") as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]
    assert main(["curves", str(tmp_path)]) == 2  # exists, no --overwrite
    assert "exists" in capsys.readouterr().err


def test_curves_command_needs_histories(tmp_path, capsys):
    from emseg_monai.cli import main

    assert main(["curves", str(tmp_path)]) == 2
    assert main(["curves", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "no stage1_history.csv" in err[0] and "does not exist" in err[1]
