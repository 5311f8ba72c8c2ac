"""Training stopped by SIGTERM/SIGINT and resumed with --resume ends where an uninterrupted run ends,
with the same weights."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from emseg_monai.cli import main
from emseg_monai.errors import InputError
from emseg_monai.handlers import TrainingCheckpoint, training_done
from tests.test_cli import train_argv

EPOCHS, ITERATIONS = 20, 4


def _args(tiny_data, out, epochs=EPOCHS):
    # the last --epochs / --iterations win in argparse
    extra = ["--val-slices", "none", "--epochs", str(epochs), "--iterations", str(ITERATIONS)]
    return train_argv(tiny_data, out, *extra)


def _trainer_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["trainer"]


def _leftovers(folder):
    return [p.name for p in folder.rglob(".*") if ".tmp" in p.name]


def _wait_for_first_epoch(proc, state):
    """Until the training process ``proc`` saved its first state file (it must still be running)."""
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()


def test_sigterm_then_resume_ends_at_the_same_iteration(tiny_data, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emseg_monai.cli", "--quiet", *_args(tiny_data, out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    state = out / "models" / "stage1_state.pt"
    _wait_for_first_epoch(proc, state)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert "SIGTERM" in last and "--resume" in last, err
    assert not (out / "models" / "model.pt").exists()  # no final weights from a stopped run
    assert not _leftovers(out)
    stopped_at = _trainer_state(state)["iteration"]
    assert 0 < stopped_at < EPOCHS * ITERATIONS

    # resume and reference in fresh processes too: same threads and settings as the stopped run
    def run(argv):
        done = subprocess.run([sys.executable, "-m", "emseg_monai.cli", "--quiet", *argv], capture_output=True, env=env)
        assert done.returncode == 0, done.stderr.decode()[-2000:]

    run([*_args(tiny_data, out), "--resume"])
    resumed = _trainer_state(state)
    assert resumed["iteration"] == EPOCHS * ITERATIONS
    assert (out / "models" / "model.pt").is_file() and (out / "models" / "scm.pt").is_file()
    with open(out / "stage1_history.csv", newline="") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == list(range(1, EPOCHS + 1))

    reference = tmp_path / "uninterrupted"
    run(_args(tiny_data, reference))
    assert _trainer_state(reference / "models" / "stage1_state.pt")["iteration"] == resumed["iteration"]
    # the random generators travel in the state: the resumed run drew the same crops and augmentations
    for name in ("model.pt", "scm.pt"):
        ours = torch.load(out / "models" / name, weights_only=True)
        theirs = torch.load(reference / "models" / name, weights_only=True)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name


def test_resume_of_a_finished_run_skips_every_step(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--quiet", *_args(tiny_data, out, epochs=2)]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in (out / "models").iterdir()}
    capsys.readouterr()
    assert main(["--quiet", *_args(tiny_data, out, epochs=2), "--resume"]) == 0
    assert capsys.readouterr().out.startswith(f"nothing to do: the run in {out} is complete")
    after = {p.name: p.stat().st_mtime_ns for p in (out / "models").iterdir()}
    assert all(before[name] == mtime for name, mtime in after.items())


def test_resume_without_an_earlier_run(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path / "none") + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to resume" in err[0]


def test_resume_with_other_epochs_is_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--quiet", *_args(tiny_data, out, epochs=2)]) == 0
    (out / "models" / "model.pt").unlink()  # as if stopped during stage 1
    assert main(_args(tiny_data, out, epochs=3) + ["--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "for 2 epochs, this run has 3" in err[0], err


def _tiny_checkpoint(tmp_path, **kwargs):
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    return TrainingCheckpoint(tmp_path / "w.pt", tmp_path / "w_state.pt", net, opt, **kwargs)


def test_resume_needs_a_state_file(tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        _tiny_checkpoint(tmp_path, resume=True)


def test_checkpoint_interval_must_be_positive(tmp_path):
    with pytest.raises(InputError, match="got 0"):
        _tiny_checkpoint(tmp_path, every=0)


def test_corrupt_state_is_a_clear_error(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"weights")
    (tmp_path / "w_state.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="cannot read the training state"):
        training_done(tmp_path / "w.pt", tmp_path / "w_state.pt")


def test_training_done_without_state_means_weights_exist(tmp_path):
    assert not training_done(tmp_path / "w.pt", tmp_path / "w_state.pt")
    (tmp_path / "w.pt").write_bytes(b"x")
    assert training_done(tmp_path / "w.pt", tmp_path / "w_state.pt")


def test_first_signal_stops_gently_second_interrupts(tmp_path):
    checkpoint = _tiny_checkpoint(tmp_path)
    checkpoint._on_signal(signal.SIGINT, None)
    assert checkpoint.stop_signal == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        checkpoint._on_signal(signal.SIGINT, None)


def test_sigterm_to_the_process_group_stops_cleanly_with_loader_workers(tiny_data, tmp_path):
    """``timeout``, Slurm and Ctrl-C signal the whole group: the loader's workers must not die first."""
    from emseg_monai import default_bundle_root

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "monai.bundle", "run", "--config_file", f"{default_bundle_root()}/configs/train.yaml"]
    argv += ["--dataset_dir", str(tiny_data), "--output_dir", str(out), "--num_workers", "1", "--val_slices", "none"]
    argv += ["--downsample", "1", "--crop_size", "32", "--batch_size", "2", "--features", "[4, 4, 4, 4, 4, 4]"]
    argv += ["--epochs", "500", "--iterations_per_epoch", "4", "--precision", "float32"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    state = out / "models" / "stage1_state.pt"
    _wait_for_first_epoch(proc, state)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert "exited unexpectedly" not in err and "killed by signal" not in err, err[-2000:]
    assert "training stopped by SIGTERM" in err and "--resume" in err, err[-2000:]
    assert proc.returncode != 0, err[-2000:]  # monai.bundle exits 1 on the interruption
    assert 0 < _trainer_state(state)["iteration"] < 500 * 4
