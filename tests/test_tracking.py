"""Experiment tracking is optional: MLflow and TensorBoard work when installed, fail clearly when not."""

import importlib.util

import pytest

from emseg_monai.cli import main
from tests.test_cli import train_argv


def _train(tiny_data, out, *extra):
    return main(["--quiet", *train_argv(tiny_data, out, *extra)])


def test_mlflow_records_both_trainings(tiny_data, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    out = tmp_path / "run"
    assert _train(tiny_data, out, "--tracking", "mlflow") == 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 2  # stage 1 and SCM
    assert all("train_loss" in r.data.metrics for r in runs)


def test_tensorboard_writes_event_files(tiny_data, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert _train(tiny_data, out, "--tensorboard", str(tmp_path / "tb")) == 0
    for stage in ("stage1", "scm"):
        assert list((tmp_path / "tb" / stage).glob("events.out.tfevents.*")), stage


def test_missing_packages_give_one_line(tiny_data, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("mlflow", "tensorboard") else real(name, *a)
    )
    assert _train(tiny_data, tmp_path / "a", "--tracking", "mlflow") == 2
    assert _train(tiny_data, tmp_path / "b", "--tensorboard", str(tmp_path / "tb")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "pip install mlflow" in err[0] and "pip install tensorboard" in err[1]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unknown_tracking_setting(tiny_data, tmp_path, capsys):
    assert _train(tiny_data, tmp_path / "a", "--tracking", "wandb") == 2
    assert "'wandb'" in capsys.readouterr().err
