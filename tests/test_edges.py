"""Edges pinned: the exact thresholds, distances and counts of MPP, the backend wrappers really in
effect, and a resumed training really starting from its saved state. Each test here was checked by
planting the bug it names in a copy of the code (see docs/reliability.md)."""

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.networks.nets import BasicUNet
from scipy import ndimage

from emseg_monai.handlers.checkpoint import TrainingCheckpoint
from emseg_monai.inference.backends import ChannelsLast, to_backend
from emseg_monai.networks.precision import Bfloat16
from emseg_monai.transforms.mpp import mpp, remove_small_objects_2d, spread_labels, z_majority
from tests.conftest import TINY_FEATURES


def test_an_object_of_exactly_min_size_stays_and_one_pixel_less_goes():
    mask = np.zeros((2, 12, 12), bool)
    mask[0, 1:4, 1:4] = True  # 9 px
    mask[1, 1:4, 1:4] = True
    mask[1, 1, 1] = False  # 8 px
    out = remove_small_objects_2d(mask, 9)
    assert out[0].sum() == 9 and out[1].sum() == 0
    # and inside MPP (no labeled slice, no votes): the same cut
    assert mpp(mask, None, [], min_size=9, vote_distances=[], bracket_vote=False)[0].sum() == 9


def test_z_majority_votes_at_its_distance():
    mask = np.zeros((5, 4, 4), bool)
    mask[0] = mask[4] = True  # slices z-2 and z+2 of z = 2 agree; z-1 and z+1 do not
    assert z_majority(mask, 2)[2].all()
    assert not z_majority(mask, 1)[2].any()
    out = mpp(mask, None, [], min_size=1, vote_distances=[2], bracket_vote=False)
    assert out[2].all()


@pytest.mark.parametrize("erosions", [1, 2, 3])
def test_spreading_erodes_exactly_erosions_per_step_times(erosions):
    labels = np.zeros((3, 24, 24), bool)
    labels[0, 4:20, 4:20] = True
    out = spread_labels(np.zeros_like(labels), labels, np.array([0]), erosions_per_step=erosions, min_size=1)
    expected = ndimage.binary_erosion(labels[0], structure=np.ones((3, 3), bool), iterations=erosions)
    np.testing.assert_array_equal(out[1], expected)
    twice = ndimage.binary_erosion(labels[0], structure=np.ones((3, 3), bool), iterations=2 * erosions)
    np.testing.assert_array_equal(out[2], twice)


def _first_conv(net):
    return next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def test_bf16_backend_runs_the_network_in_bfloat16():
    torch.manual_seed(0)
    net = BasicUNet(2, 1, 1, features=TINY_FEATURES).eval()
    wrapped = to_backend(net, "bf16")
    assert isinstance(wrapped, Bfloat16)
    seen = []
    hook = _first_conv(net).register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    with torch.inference_mode():
        out = wrapped(torch.rand(1, 1, 32, 32))
    hook.remove()
    assert seen == [torch.bfloat16] and out.dtype == torch.float32


def test_channels_last_backend_runs_channels_last():
    torch.manual_seed(0)
    net = BasicUNet(2, 1, 1, features=TINY_FEATURES).eval()
    wrapped = to_backend(net, "channels_last")
    assert isinstance(wrapped, ChannelsLast)
    seen = []
    conv = _first_conv(wrapped.network)
    hook = conv.register_forward_hook(
        lambda module, args, out: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    with torch.inference_mode():
        wrapped(torch.rand(1, 1, 32, 32))
    hook.remove()
    assert seen == [True]


def test_resume_loads_the_saved_model_optimiser_and_schedule(tmp_path):
    def parts(seed):
        torch.manual_seed(seed)
        net = torch.nn.Linear(3, 2)
        opt = torch.optim.Adam(net.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        return net, opt, sched

    net, opt, sched = parts(0)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    engine = Engine(lambda e, b: None)
    engine.state.max_epochs, engine.state.epoch, engine.state.iteration, engine.state.epoch_length = 4, 2, 6, 3
    saver = TrainingCheckpoint(tmp_path / "w.pt", tmp_path / "s.pt", net, opt, sched)
    saver.save_state(engine)
    drawn = torch.rand(3), np.random.rand(3)  # what the generators give next, from the saved state

    fresh_net, fresh_opt, fresh_sched = parts(1)  # other weights, no optimiser state
    loader = TrainingCheckpoint(tmp_path / "w.pt", tmp_path / "s.pt", fresh_net, fresh_opt, fresh_sched, resume=True)
    target = Engine(lambda e, b: None)
    target.state.max_epochs = 4
    loader.started(target)
    loader.restore_signals()
    for a, b in zip(net.state_dict().values(), fresh_net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    saved, loaded = opt.state_dict(), fresh_opt.state_dict()
    assert saved["param_groups"][0]["lr"] == loaded["param_groups"][0]["lr"] == 0.05
    for key, state in saved["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(torch.as_tensor(value), torch.as_tensor(loaded["state"][key][name]))
    assert fresh_sched.state_dict()["last_epoch"] == sched.state_dict()["last_epoch"] == 1
    assert target.state.epoch == 2 and target.state.iteration == 6
    assert torch.equal(torch.rand(3), drawn[0]) and np.array_equal(np.random.rand(3), drawn[1])  # generators too
