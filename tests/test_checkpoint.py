"""TrainingCheckpoint and its helpers on a plain ignite Engine: which epochs save, who writes,
what an interrupted run says, and what resume restores (no bundle, no data: fast)."""

import logging
import os
import signal

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from emseg_monai.errors import InputError, TrainingInterrupted
from emseg_monai.handlers import checkpoint as ckpt
from emseg_monai.handlers.checkpoint import (
    TrainingCheckpoint,
    is_main_process,
    load_random_state,
    raise_if_interrupted,
    random_states,
    save_random_state,
    training_done,
)


def _engine(net, opt):
    def step(engine, batch):
        opt.zero_grad()
        loss = net(torch.ones(1, 2)).sum()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return Engine(step)


def _parts():
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    return net, torch.optim.SGD(net.parameters(), lr=0.1)


def _run(tmp_path, epochs=3, length=4, stop_at=None, **options):
    """Run ``epochs`` x ``length`` iterations with a checkpoint; a SIGTERM flag set at ``stop_at``."""
    net, opt = _parts()
    engine = _engine(net, opt)
    handler = TrainingCheckpoint(tmp_path / "w.pt", tmp_path / "s.pt", net, opt, **options)
    if stop_at is not None:

        @engine.on(Events.ITERATION_COMPLETED(once=stop_at))
        def _stop(engine):
            handler.stop_signal = signal.SIGTERM

    handler.attach(engine)
    engine.run(range(length), max_epochs=epochs)
    return engine, handler


def test_is_main_process_only_on_rank_zero(monkeypatch):
    assert is_main_process()  # no process group here
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    for rank, main in ((0, True), (1, False), (2, False)):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        assert is_main_process() is main


def test_training_done_compares_iterations_with_epochs_times_length(tmp_path):
    weights, state = tmp_path / "w.pt", tmp_path / "s.pt"
    assert not training_done(weights, state)  # no weights
    torch.save({}, weights)
    assert training_done(weights, state)  # weights and no state: a run that kept none
    for iteration, done in ((11, False), (12, True), (13, True)):
        trainer = {"iteration": iteration, "max_epochs": 3, "epoch_length": 4}
        torch.save({"trainer": trainer, "model": {}}, state)
        assert training_done(weights, state) is done, iteration


def test_state_is_saved_every_n_epochs_and_after_the_last(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(TrainingCheckpoint, "save_state", lambda self, engine: saved.append(engine.state.epoch))
    _run(tmp_path, epochs=5, length=1, every=2)
    assert saved == [2, 4, 5]
    with pytest.raises(InputError, match="at least 1 epoch, got 0"):
        TrainingCheckpoint(tmp_path / "w.pt", tmp_path / "s.pt", *_parts(), every=0)


def test_weights_written_by_the_main_process_only_and_only_when_asked(tmp_path, monkeypatch):
    _run(tmp_path / "a", save_weights=False)
    assert (tmp_path / "a" / "s.pt").is_file() and not (tmp_path / "a" / "w.pt").exists()
    engine, _ = _run(tmp_path / "b")
    weights = torch.load(tmp_path / "b" / "w.pt", weights_only=True)
    assert set(weights) == {"weight", "bias"}
    monkeypatch.setattr(ckpt, "is_main_process", lambda: False)
    (tmp_path / "c").mkdir()
    _run(tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []  # rank > 0 writes neither weights nor state


def test_interrupted_run_names_the_last_saved_epoch(tmp_path):
    engine, handler = _run(tmp_path / "a", epochs=3, length=4, stop_at=6)
    assert engine.state.iteration == 6 and not (tmp_path / "a" / "w.pt").exists()
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM at iteration 6; the state of epoch 1 is in") as info:
        raise_if_interrupted(engine)
    assert info.value.signum == signal.SIGTERM
    engine, handler = _run(tmp_path / "b", epochs=3, length=4, stop_at=10)
    with pytest.raises(TrainingInterrupted, match="the state of epoch 2 is in"):
        handler.raise_if_interrupted(engine)
    engine, handler = _run(tmp_path / "c", epochs=3, length=4, stop_at=2)
    with pytest.raises(TrainingInterrupted, match="at iteration 2; no epoch had completed"):
        handler.raise_if_interrupted(engine)


def test_raise_if_interrupted_is_quiet_after_a_full_run_or_without_a_checkpoint(tmp_path):
    engine, handler = _run(tmp_path)
    raise_if_interrupted(engine)
    assert (tmp_path / "w.pt").is_file()
    plain = _engine(*_parts())
    plain.run(range(2), max_epochs=1)
    assert raise_if_interrupted(plain) is None


def test_resume_restores_model_optimizer_and_counters(tmp_path):
    engine, _ = _run(tmp_path, epochs=300, length=1, every=300)  # > 256: compared by value, not identity
    saved = torch.load(tmp_path / "s.pt", weights_only=True)
    net, opt = _parts()
    resumed = _engine(net, opt)
    TrainingCheckpoint(tmp_path / "w2.pt", tmp_path / "s.pt", net, opt, resume=True).attach(resumed)
    resumed.run(range(1), max_epochs=300)  # already at its last epoch: loads and ends
    assert resumed.state.iteration == 300 and resumed.state.epoch == 300
    for key, value in saved["model"].items():
        assert torch.equal(net.state_dict()[key], value)
    assert opt.state_dict()["param_groups"] == saved["optimizer"]["param_groups"]
    other = _engine(*_parts())
    TrainingCheckpoint(tmp_path / "w3.pt", tmp_path / "s.pt", *_parts(), resume=True).attach(other)
    with pytest.raises(InputError, match="is for 300 epochs, this run has 299"):
        other.run(range(1), max_epochs=299)


class _Holder:
    def __init__(self, *children):
        self.children = list(children)
        self.rng = np.random.RandomState(7)


def test_random_states_walks_attributes_and_lists_once():
    inner = _Holder()
    root = _Holder(inner, [inner, "text"], np.zeros(3))
    assert random_states(root) == [inner.rng, root.rng]  # attribute order, depth first


def test_random_state_round_trip_and_mismatch(caplog, monkeypatch):
    data = _Holder(_Holder())
    state = save_random_state(data)
    first = [r.random_sample() for r in random_states(data)] + [float(np.random.random_sample())]
    load_random_state(state, data)
    assert [r.random_sample() for r in random_states(data)] + [float(np.random.random_sample())] == first
    fewer = _Holder()
    before = fewer.rng.get_state()[1].copy()
    with caplog.at_level(logging.WARNING, logger=ckpt.__name__):
        load_random_state(state, fewer)
    assert "2 transform generators, the data loader 1" in caplog.text
    assert np.array_equal(fewer.rng.get_state()[1], before)  # left alone
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    load_random_state(state, data)  # no "cuda" entry: CUDA generators untouched
    load_random_state({**state, "cuda": ["cuda state"]}, data)
    assert restored == [["cuda state"]]


class _WorkerFacts(torch.utils.data.Dataset):
    """Reports, from inside a loader worker, its process group and a draw of its random state."""

    def __init__(self):
        from monai.transforms import Randomizable

        self.random = Randomizable().set_random_state(seed=0)

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return torch.tensor([os.getpgid(0), os.getpid(), self.random.R.randint(1 << 30)])


def test_loader_workers_leave_the_process_group_and_keep_monai_seeding():
    from monai.data import DataLoader

    (seen,) = DataLoader(_WorkerFacts(), batch_size=1, num_workers=1, worker_init_fn=ckpt.worker_init)
    group, pid, draw = seen[0].tolist()
    assert group == pid != os.getpgid(0)  # a group-wide SIGTERM / Ctrl-C reaches the trainer alone
    assert draw != np.random.RandomState(0).randint(1 << 30)  # MONAI's worker_init_fn still re-seeded it


def _dying_loader_run(tmp_path, stop_requested):
    """A run whose data-loader worker dies at iteration 6, with or without a stop signal received first."""
    net, opt = _parts()
    handler = TrainingCheckpoint(tmp_path / "w.pt", tmp_path / "s.pt", net, opt)

    def step(engine, batch):
        if engine.state.iteration == 6:
            if stop_requested:  # the signal reached the trainer and its loader's workers alike
                handler.stop_signal = signal.SIGTERM
            raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Terminated. ")
        return 0.0

    engine = Engine(step)
    handler.attach(engine)
    engine.run(range(4), max_epochs=3)


def test_a_worker_killed_by_the_stop_signal_is_a_clean_stop(tmp_path):
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM at iteration 6; the state of epoch 1 is in"):
        _dying_loader_run(tmp_path / "a", stop_requested=True)
    with pytest.raises(RuntimeError, match="DataLoader worker") as info:  # no stop asked: still an error
        _dying_loader_run(tmp_path / "b", stop_requested=False)
    assert not isinstance(info.value, TrainingInterrupted)
