"""napari plugin: sample data, Segment, Train from painted slices, Measure; headless (Xvfb via pytest-xvfb)."""

import os
import shutil

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if not os.environ.get("DISPLAY") and shutil.which("Xvfb") is None:
    pytest.skip("no display and no Xvfb (.ci/apt-packages.txt lists the system packages)", allow_module_level=True)

from emseg_monai.data import make_synthetic_stack  # noqa: E402
from emseg_monai.inference.stages import segment  # noqa: E402
from emseg_monai.napari import _measure, _segment, _train  # noqa: E402
from emseg_monai.workflows import load_bundle_networks  # noqa: E402
from tests.conftest import TRAIN_ARGS  # noqa: E402

WAIT_MS = 120_000


@pytest.fixture
def errors(monkeypatch):
    shown = []
    for module in (_segment, _train, _measure):
        monkeypatch.setattr(module, "show_error", shown.append)
    return shown


def test_sample_data_and_manifest(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("emseg-monai", "synthetic-em")
    assert [layer.name for layer in viewer.layers] == ["synthetic EM", "synthetic mitochondria"]
    assert viewer.layers["synthetic EM"].data.shape == (24, 192, 192)
    _, widget = viewer.window.add_plugin_dock_widget("emseg-monai", "Segment")  # napari hands it a proxy viewer
    assert isinstance(widget, _segment.SegmentWidget) and widget.image.currentText() == "synthetic EM"
    widget.use_scm.setChecked(False)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.result is not None and not widget.progress.busy, timeout=WAIT_MS)
    assert viewer.layers["synthetic EM mitochondria"].data.shape == (24, 192, 192)


def test_segment_widget_adds_emseg_masks(make_napari_viewer, qtbot, tiny_run):
    viewer = make_napari_viewer()
    image = make_synthetic_stack((10, 48, 40), seed=3)[0]
    viewer.add_image(image, name="em", scale=(5, 5, 5))
    widget = _segment.SegmentWidget(viewer)
    widget.models.setText(str(tiny_run))
    widget.keep_stage1.setChecked(True)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.result is not None and not widget.progress.busy, timeout=WAIT_MS)
    stage1, scm, settings, _ = load_bundle_networks(tiny_run)
    expected = segment(image, stage1, scm, settings, progress=False)
    np.testing.assert_array_equal(viewer.layers["em mitochondria"].data, expected["final_mask"] > 0)
    np.testing.assert_array_equal(viewer.layers["em stage-1 probability"].data, expected["stage1_prob"])
    assert tuple(viewer.layers["em mitochondria"].scale) == (5, 5, 5)
    assert widget.progress.status.text().startswith("done: em mitochondria")


def test_segment_widget_runs_the_networks_at_their_trained_pixel_size(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = _segment.SegmentWidget(viewer)  # the shipped weights: 5 nm pixels at 1/2
    eight = viewer.add_image(make_synthetic_stack((8, 32, 32), seed=1)[0], name="em", scale=(8, 8, 8))
    assert widget._networks(eight)[1].stage1_downsample == 1.25
    plain = viewer.add_image(make_synthetic_stack((8, 32, 32), seed=1)[0], name="em2")  # scale 1: unknown
    assert widget._networks(plain)[1].stage1_downsample == 2.0


def test_segment_widget_skips_the_scm_on_a_thick_looking_layer_of_unknown_scale(make_napari_viewer, qtbot):
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(np.random.default_rng(0).normal(size=(72, 64, 64)), 3.0)[::6]  # sections 6x the pixels
    image = np.round(255 * (field - field.min()) / np.ptp(field)).astype(np.uint8)
    viewer = make_napari_viewer()
    widget = _segment.SegmentWidget(viewer)  # the shipped weights: 5 nm isotropic
    plain = viewer.add_image(image, name="em")  # napari's default scale: voxel size unknown
    (_, scm), settings, note = widget._networks(plain)
    assert scm is None and not settings.use_scm and note.startswith(" (stage 1 alone: its neighbouring slices")
    assert "set the layer's scale in nm" in note
    given = viewer.add_image(image, name="em5", scale=(5, 5, 5))  # a scale in nm wins over the image
    (_, scm), settings, note = widget._networks(given)
    assert scm is not None and settings.use_scm and note == ""
    widget.use_scm.setChecked(False)  # not asked for: nothing to say
    assert widget._networks(plain)[2] == ""
    widget.use_scm.setChecked(True)
    widget.image.setCurrentText("em")
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.result is not None and not widget.progress.busy, timeout=WAIT_MS)
    status = widget.progress.status.text()
    assert status.startswith("done: em mitochondria") and "stage 1 alone" in status


def test_segment_widget_smooths_shifted_sections_in_y_and_x_only(make_napari_viewer, tiny_run, tmp_path):
    """Weights trained on thick sections: a layer whose sections do not line up gets smoothing_z 0,
    as `emseg segment` gives a file (voxel_match.shifted_sections); a lined-up layer keeps the sigma."""
    import re

    from scipy.ndimage import gaussian_filter

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = run / "configs" / "inference.yaml"
    text, found = re.subn(r"(?m)^trained_voxel_size: .*$", "trained_voxel_size: [40.0, 5.0, 5.0]", config.read_text())
    assert found == 1
    config.write_text(text)
    plane = gaussian_filter(np.random.default_rng(0).normal(size=(96, 96)), 2.0, mode="wrap")
    plane = np.round(255 * (plane - plane.min()) / np.ptp(plane)).astype(np.uint8)
    moves = [(0, 0), (6, 6), (0, 0), (-6, 5), (0, 0), (6, 6), (0, 0), (-6, 5)]  # 7.8 to 8.5 px apart
    viewer = make_napari_viewer()
    shifted = viewer.add_image(np.stack([np.roll(plane, m, axis=(0, 1)) for m in moves]), scale=(40, 5, 5))
    aligned = viewer.add_image(np.repeat(plane[None], 8, axis=0), scale=(40, 5, 5))
    widget = _segment.SegmentWidget(viewer)
    widget.models.setText(str(run))
    (_, scm), settings, note = widget._networks(shifted)
    assert scm is not None and settings.smoothing_z == 0.0
    assert note == " (smoothing in Y and X only: sections shifted by 8.5 px or more)"
    (_, scm), settings, note = widget._networks(aligned)
    assert scm is not None and settings.smoothing_z is None and note == ""
    widget.models.setText(str(tiny_run))  # trained voxel size unknown, assumed isotropic: nothing measured
    assert widget._networks(shifted)[1].smoothing_z is None
    text = re.sub(r"(?m)^trained_voxel_size: .*$", "trained_voxel_size: null", config.read_text())
    config.write_text(re.sub(r"(?m)^trained_z_ratio: .*$", "trained_z_ratio: 8.0", text))
    widget.models.setText(str(run))  # size unknown, thick sections estimated from the image: measured
    assert widget._networks(shifted)[1].smoothing_z == 0.0


def test_segment_widget_follows_the_runs_own_scm_decision(make_napari_viewer, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = run / "configs" / "inference.yaml"
    text = config.read_text()
    assert "\nuse_scm: true " in text
    config.write_text(text.replace("\nuse_scm: true ", "\nuse_scm: false ", 1))  # as a run whose check kept stage 1
    viewer = make_napari_viewer()
    layer = viewer.add_image(make_synthetic_stack((8, 32, 32), seed=1)[0], name="em")
    widget = _segment.SegmentWidget(viewer)
    widget.models.setText(str(run))
    (_, scm), settings, note = widget._networks(layer)
    assert scm is None and not settings.use_scm and "as the weights' bundle says: use_scm false" in note
    widget.models.setText(str(tiny_run))  # the same run with use_scm true: the SCM runs
    (_, scm), settings, note = widget._networks(layer)
    assert scm is not None and settings.use_scm and note == ""


def test_segment_cancel_adds_nothing(make_napari_viewer, qtbot, tiny_run):
    viewer = make_napari_viewer()
    viewer.add_image(make_synthetic_stack((96, 64, 64), seed=1)[0], name="em")
    widget = _segment.SegmentWidget(viewer)
    widget.models.setText(str(tiny_run))
    assert widget.run() is not None
    widget.progress.stop()
    qtbot.waitUntil(lambda: not widget.progress.busy, timeout=WAIT_MS)
    assert [layer.name for layer in viewer.layers] == ["em"]
    assert widget.progress.status.text() == "cancelled: nothing added"


def test_segment_refuses_a_2d_image_and_missing_weights(make_napari_viewer, errors, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="flat")
    widget = _segment.SegmentWidget(viewer)
    assert widget.run() is None
    assert errors == ["layer 'flat' must be a 3D (Z, Y, X) stack, got shape (32, 32)"]
    viewer.add_image(np.zeros((4, 32, 32), np.uint8), name="stack")
    widget.image.setCurrentText("stack")
    widget.models.setText(str(tmp_path / "nowhere"))
    assert widget.run() is None and "nowhere" in errors[-1] and len(viewer.layers) == 2


def _tiny_options():
    """TRAIN_ARGS (the tiny test recipe) as the Train widget's extra options."""
    args, options = list(TRAIN_ARGS), {}
    while args:
        key, value = args.pop(0).lstrip("-"), args.pop(0)
        if key not in ("labeled", "epochs", "iterations"):
            options[key] = value
    return options


def test_train_widget_trains_from_painted_slices(make_napari_viewer, qtbot, tmp_path, errors):
    viewer = make_napari_viewer()
    image, label = make_synthetic_stack((12, 32, 32), seed=0)
    painted = np.zeros(label.shape, np.uint8)
    painted[[0, 4, 8]] = label[[0, 4, 8]] > 0
    viewer.add_image(image, name="em")
    viewer.add_labels(painted, name="painted")
    assert _train.painted_slices(painted) == [0, 4, 8]
    widget = _train.TrainWidget(viewer)
    widget.output.setText(str(tmp_path / "run"))
    widget.epochs.setValue(1)
    widget.iterations.setValue(2)
    widget.extra = _tiny_options()
    assert widget.run() is not None, errors
    qtbot.waitUntil(lambda: widget.result is not None and not widget.progress.busy, timeout=WAIT_MS)
    assert (tmp_path / "run" / "models" / "model.pt").is_file() and (tmp_path / "run" / "models" / "scm.pt").is_file()
    finished = viewer.layers["em finished"].data
    np.testing.assert_array_equal(finished[[0, 4, 8]], painted[[0, 4, 8]])  # labeled slices keep their labels
    assert widget.progress.status.text().startswith("trained: ")


def test_train_cancel_stops_the_run_and_says_how_to_resume(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    image, label = make_synthetic_stack((12, 32, 32), seed=0)
    viewer.add_image(image, name="em")
    viewer.add_labels((label > 0).astype(np.uint8) * (np.arange(12) % 4 == 0)[:, None, None], name="painted")
    widget = _train.TrainWidget(viewer)
    widget.output.setText(str(tmp_path / "run"))
    widget.epochs.setValue(500)
    widget.extra = _tiny_options()
    widget.run()
    qtbot.waitUntil(lambda: widget.progress.bar.value() >= 1, timeout=WAIT_MS)  # training has started
    widget.progress.stop()
    qtbot.waitUntil(lambda: not widget.progress.busy, timeout=WAIT_MS)
    assert widget.progress.status.text().startswith("stopped: the state is in")
    assert widget.process.poll() == _train.STOPPED  # emseg train itself stopped, after SIGTERM
    assert (tmp_path / "run" / "models" / "stage1_state.pt").is_file()  # what --resume continues from
    assert "em finished" not in viewer.layers


def test_train_refuses_unpainted_labels(make_napari_viewer, errors, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 32, 32), np.uint8), name="em")
    viewer.add_labels(np.zeros((4, 32, 32), np.uint8), name="painted")
    widget = _train.TrainWidget(viewer)
    widget.output.setText(str(tmp_path / "run"))
    assert widget.run() is None
    assert errors == ["no painted slice: paint the mitochondria of a few slices in the labels layer"]
    assert not (tmp_path / "run").exists()


def test_measure_widget_table_and_csv(make_napari_viewer, tmp_path, errors):
    viewer = make_napari_viewer()
    mask = np.zeros((6, 20, 20), np.uint8)
    mask[1:3, 2:6, 2:6] = 1
    mask[3:6, 10:15, 10:14] = 1
    viewer.add_labels(mask, name="mito", scale=(5, 5, 5))
    widget = _measure.MeasureWidget(viewer)
    rows = widget.measure()
    assert [row["voxels"] for row in rows] == [32, 60] and widget.table.rowCount() == 2
    assert rows[0]["volume_um3"] == pytest.approx(32 * 125e-9)
    path = widget.save(tmp_path / "m.csv")
    assert len(path.read_text().splitlines()) == 3 and errors == []
    viewer.add_image(np.zeros((6, 20, 20)), name="image only")
    viewer.layers.remove("mito")
    assert widget.measure() == [] and errors == ["no labels layer to use: add or open one first"]
