"""What a new user meets in the first hour: one-line errors on the bundle command line too, quiet
Dask, a loss per epoch in the log, defaults in --help, warnings for suspicious labels."""

import logging
import subprocess
import sys

import numpy as np
import pytest

from emseg_monai import default_bundle_root
from emseg_monai.cli import main
from emseg_monai.errors import TrainingInterrupted
from emseg_monai.io import write_stack
from emseg_monai.workflows import run_config
from tests.conftest import TINY_FEATURES

INFERENCE = f"{default_bundle_root()}/configs/inference.yaml"


def bundle(*args, cwd):
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", INFERENCE, *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_bundle_command_errors_are_one_line_and_debug_keeps_the_traceback(tmp_path):
    proc = bundle("--image_file", tmp_path / "nope.tif", "--output_file", tmp_path / "o.tif", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: stack file does not exist: {tmp_path / 'nope.tif'}"
    proc = bundle("--image_file", tmp_path / "nope.tif", "--output_file", "o.tif", "--debug", "true", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "InputError" in proc.stderr


def test_dask_run_logs_no_distributed_chatter(tiny_data, tmp_path, caplog):
    pytest.importorskip("distributed")
    caplog.set_level(logging.INFO)
    out = tmp_path / "o.zarr"
    assert main(["segment", str(tiny_data / "image.tif"), str(out), "--workers", "2", "--block-size", "6"]) == 0
    chatter = [r for r in caplog.records if r.name.startswith(("distributed", "tornado")) and r.levelno < logging.ERROR]
    assert not chatter, [r.getMessage() for r in chatter[:5]]


def test_training_logs_loss_per_epoch(tiny_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    train = {"epochs": 2, "iterations_per_epoch": 2, "batch_size": 2, "crop_size": 32, "downsample": 1}
    run_config(
        ["train.yaml"],
        dataset_dir=str(tiny_data),
        output_dir=str(tmp_path),
        features=TINY_FEATURES,
        labeled_slices="every:3",
        val_interval=1,
        device="cpu",
        **train,
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "emseg_monai.handlers.history"]
    assert len(lines) == 2 and lines[1].startswith("stage1 epoch 2/2, loss ")
    assert "validation Dice" in lines[1] and "left" in lines[1]


def test_help_shows_the_config_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default 30, train.yaml: epochs" in text and "default 300, mpp.yaml: min_size" in text


def test_labeled_slices_without_foreground_warn(tiny_data, tmp_path, caplog):
    from emseg_monai.training.pipeline import check_train_inputs

    labels = np.zeros((12, 32, 32), np.uint8)
    labels[3, 10:20, 10:20] = 255
    write_stack(tmp_path / "labels.tif", labels)
    check_train_inputs(tiny_data / "image.tif", tmp_path / "labels.tif", "0,3,6", tmp_path / "run", downsample=1)
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2 of the 3 labeled slices have no mitochondrion" in w and "slices 0, 6" in w for w in warning)


def test_measure_and_evaluate_read_zarr_masks(tiny_data, tmp_path, capsys):
    import zarr

    from emseg_monai.io import read_mask

    truth = read_mask(tiny_data / "label.tif")
    zarr.create_array(str(tmp_path / "m.zarr"), shape=truth.shape, chunks=(4, 32, 32), dtype="uint8")[:] = truth * 255
    assert main(["measure", str(tmp_path / "m.zarr"), "--voxel-size", "5,5,5"]) == 0
    assert (tmp_path / "m_objects.csv").is_file() and "objects" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "m.zarr"), str(tiny_data / "label.tif")]) == 0
    assert "Dice 100.00%" in capsys.readouterr().out


def test_interrupted_demo_says_how_to_go_on(monkeypatch, tmp_path, capsys):
    import emseg_monai.demo as demo

    def stopped(*args, **kwargs):
        raise TrainingInterrupted("training stopped by SIGINT ... --resume", 2)

    monkeypatch.setattr(demo, "run_demo", stopped)
    assert main(["demo", "--output", str(tmp_path / "d")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["emseg demo: stopped by SIGINT; run emseg demo again with --overwrite"]


def test_progress_bar_shows_the_loss():
    import io

    from ignite.engine import Engine

    from emseg_monai.handlers import LossProgressBar

    stream = io.StringIO()
    engine = Engine(lambda engine, batch: [{"loss": 0.25 * batch, "pred": None}])
    LossProgressBar(persist=True, disable=False, file=stream).attach(engine)
    engine.run([1, 2, 3], max_epochs=1)
    assert "loss=0.75" in stream.getvalue()


def test_ctrl_c_in_a_bundle_training_is_one_line_saying_resume_true(tiny_data, tmp_path):
    import os
    import signal
    import time

    config = f"{default_bundle_root()}/configs/train.yaml"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config, "--dataset_dir", str(tiny_data)]
    command += ["--output_dir", str(tmp_path), "--epochs", "200", "--iterations_per_epoch", "2", "--batch_size", "2"]
    command += ["--crop_size", "32", "--downsample", "1", "--features", str(TINY_FEATURES).replace(" ", "")]
    command += ["--device", "cpu", "--val_slices", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    state = tmp_path / "models" / "stage1_state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err, err[-3000:]
    assert last.startswith("error: training stopped by SIGINT") and "--resume true" in last, last
