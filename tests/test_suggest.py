"""emseg suggest: which slices to label next; emseg train --resume with new labels fine-tunes."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

import emseg_monai.networks
from emseg_monai.cli import main
from emseg_monai.errors import InputError
from emseg_monai.training.bundle import config_defaults
from emseg_monai.training.suggest import label_distance, rank_slices, slice_disagreement, slice_entropy
from emseg_monai.workflows import run_config
from tests.conftest import train_argv


def test_without_signals_the_picks_split_the_widest_gaps():
    picks, _ = rank_slices(np.array([0, 20]), 21, 3)
    assert [p.slice for p in picks] == [10, 5, 15]
    assert [p.order for p in picks] == [1, 2, 3]
    assert [p.distance for p in picks] == [10, 5, 5]  # distance to the labels before any pick
    picks, _ = rank_slices(np.array([], dtype=int), 9, 2)  # no label yet: the first slice, then the far end
    assert [p.slice for p in picks] == [0, 8]


def test_between_equally_far_slices_the_harder_one_wins():
    uncertainty = np.zeros(21)
    uncertainty[15] = 0.9  # stage 1 unsure in the second gap only
    uncertainty[14] = 0.8
    picks, info = rank_slices(np.array([0, 10, 20]), 21, 1, uncertainty=uncertainty)
    assert picks[0].slice == 15
    assert info[15] == 1.0 and info[5] == 0.0
    assert "stage 1 unsure (top 1% of unlabeled slices)" in picks[0].reason
    # a slice next to a label is not worth it, however unsure stage 1 is there
    uncertainty = np.zeros(21)
    uncertainty[1] = 1.0
    picks, _ = rank_slices(np.array([0, 10, 20]), 21, 1, uncertainty=uncertainty)
    assert picks[0].slice == 5
    assert picks[0].reason == "5 slices from the nearest label; fills a gap"
    # each signal is named by what it is, whichever are given
    disagreement = np.zeros(21)
    disagreement[15] = 1.0
    picks, _ = rank_slices(np.array([0, 10, 20]), 21, 1, disagreement=disagreement)
    assert picks[0].slice == 15 and "the SCM and MPP change stage 1 here" in picks[0].reason
    assert "unsure" not in picks[0].reason


def test_labeled_slices_are_never_picked_and_bad_counts_fail():
    picks, _ = rank_slices(np.array([1, 2]), 4, 2)
    assert sorted(p.slice for p in picks) == [0, 3]
    with pytest.raises(InputError, match=r"count must be in 1\.\.2 \(the unlabeled slices\), got 3"):
        rank_slices(np.array([1, 2]), 4, 3)
    with pytest.raises(InputError, match="got 0"):
        rank_slices(np.array([1]), 4, 0)


def test_signals_by_hand():
    assert label_distance(np.array([2]), 5).tolist() == [2, 1, 0, 1, 2]
    prob = np.zeros((2, 2, 2), dtype=np.uint8)
    prob[1] = [[0, 255], [255, 0]]
    assert slice_entropy(prob).tolist() == [0.0, 0.0]
    half = np.full((1, 2, 2), 0.5)
    assert slice_entropy(half)[0] == pytest.approx(1.0)
    assert slice_entropy(np.full((1, 2, 2), 128, dtype=np.uint8))[0] == pytest.approx(1.0, abs=1e-3)
    a = np.zeros((3, 2, 2), dtype=bool)
    b = a.copy()
    a[1, 0, 0] = b[1, 0, 0] = True  # slice 1: equal
    a[2, 0, 0] = b[2, 1, 1] = True  # slice 2: disjoint
    a[0, 0, 0] = True  # slice 0: one pixel against nothing
    assert slice_disagreement(a, b).tolist() == [1.0, 0.0, 1.0]
    assert slice_disagreement(b[1:2] * 0, b[1:2] * 0).tolist() == [0.0]  # both empty: agree


def test_cli_and_bundle_suggest_on_a_run(tiny_run, tmp_path, capsys):
    csv_file, png = tmp_path / "s.csv", tmp_path / "s.png"
    argv = ["--quiet", "suggest", str(tiny_run), "--count", "2", "--csv", str(csv_file), "--plot", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("  slice ")]
    assert len(lines) == 2 and "slices from the nearest label" in lines[0]
    rows = list(csv.DictReader(csv_file.read_text().splitlines()))
    assert len(rows) == 12  # one per slice of the 12-slice stack
    labeled = {int(r["slice"]) for r in rows if r["labeled"] == "1"}
    assert labeled == {0, 3, 6, 9}  # every:3, from the run's configs
    picked = {int(r["slice"]): int(r["suggested"]) for r in rows if r["suggested"]}
    assert sorted(picked.values()) == [1, 2] and not labeled & set(picked)
    assert [int(line.split()[1].rstrip(":")) for line in lines] == sorted(picked, key=picked.get)
    assert png.stat().st_size > 5000
    assert main(argv) == 2  # files exist: refused without --overwrite
    assert "output exists" in capsys.readouterr().err
    # the bundle's own config gives the same picks
    chosen = run_config(["suggest.yaml"], tiny_run, count=2, csv_file=None, plot_file=None)
    assert [s.slice for s in chosen] == sorted(picked, key=picked.get)


def test_suggest_needs_a_training_run(capsys):
    assert main(["suggest", "bundle"]) == 2
    assert "no training run in bundle: suggestions need its stage1_prob.tif" in capsys.readouterr().err


def test_resume_with_new_labels_fine_tunes_the_earlier_weights(tiny_data, tiny_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {name: torch.load(run / "models" / name, weights_only=True) for name in ("model.pt", "scm.pt")}
    started = []
    original = emseg_monai.networks.initial_weights

    def spy(network, path):
        started.append(path)
        out = original(network, path)
        if path:
            expected = before["scm.pt" if str(path).endswith("scm.pt") else "model.pt"]
            assert all(torch.equal(v, expected[k]) for k, v in out.state_dict().items())
        return out

    monkeypatch.setattr(emseg_monai.networks, "initial_weights", spy)
    assert main(["--quiet", *train_argv(tiny_data, run, "--labeled", "every:2", "--resume")]) == 0
    assert "fine-tuned the earlier weights" in capsys.readouterr().out
    assert [str(p).rsplit("/", 1)[-1] for p in started if p] == ["model.pt", "scm.pt"]
    assert config_defaults(run / "configs" / "train.yaml")["labeled_slices"] == "every:2"
    assert not (run / "models" / "previous").exists() and not (run / "models" / "finetune.json").exists()
    after = torch.load(run / "models" / "model.pt", weights_only=True)
    assert any(not torch.equal(after[k], v) for k, v in before["model.pt"].items())  # it trained
    assert (run / "final_mask.tif").is_file()
    # the same labels again: nothing to do
    assert main(["--quiet", *train_argv(tiny_data, run, "--labeled", "every:2", "--resume")]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_an_interrupted_fine_tuning_resumes_only_with_its_labels(tiny_data, tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "models" / "previous").mkdir()
    (run / "models" / "finetune.json").write_text(json.dumps({"labeled_slices": "every:2"}))
    assert main(["--quiet", *train_argv(tiny_data, run, "--labeled", "every:4", "--resume")]) == 2
    err = capsys.readouterr().err
    assert "holds an interrupted fine-tuning with --labeled 'every:2': resume it with that, got 'every:4'" in err


def test_simulation_script_runs_two_rounds_on_synthetic_data(tmp_path, capsys):
    """benchmarks/suggest_simulation.py, tiny: both arms ask, fine-tune and are scored each round."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "suggest_simulation.py"
    spec = importlib.util.spec_from_file_location("suggest_simulation", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["--synthetic", "--tiny", "--output", str(tmp_path / "sim"), "--rounds", "2", "--start", "2"]
    argv += ["--add", "2", "--reference", "6", "--epochs", "1", "--finetune-epochs", "1", "--iterations", "2"]
    record = script.main([*argv, "--precision", "float32", "--plot", str(tmp_path / "sim.png")])
    for arm in ("suggest", "even"):
        rounds = record["arms"][arm]
        assert [r["labeled"] for r in rounds] == [2, 4, 6]
        assert all(set(a["slices"]) < set(b["slices"]) for a, b in zip(rounds, rounds[1:]))  # labels only grow
        assert all(0.0 <= r["dice"] <= 1.0 for r in rounds)
    assert record["arms"]["suggest"][0] == record["arms"]["even"][0]  # the same start
    # widest gap first: 0..23 split at 11 (11 and 12 tie, the lower wins), then 11..23 at 17
    assert record["arms"]["even"][1]["slices"] == [0, 11, 17, 23]
    assert set(record["reference"]) == {"seed0", "seed1"}
    used = {z for arm in record["arms"].values() for r in arm for z in r["slices"]}
    assert record["scored_slices"] == 24 - len(used | {0, 5, 9, 14, 18, 23})  # evenly_spaced(6, 24)
    assert "| labeled slices | suggest | even |" in capsys.readouterr().out
    assert (tmp_path / "sim.png").stat().st_size > 5000
