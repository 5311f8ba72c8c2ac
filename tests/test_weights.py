"""Tests for emseg_monai.networks.weights.load_weights."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from monai.networks.nets import BasicUNet

from emseg_monai.errors import InputError
from emseg_monai.networks import load_weights

FEATURES = (4, 4, 8, 8, 16, 4)


def unet(in_channels: int = 1, features=FEATURES, seed: int = 0) -> BasicUNet:
    torch.manual_seed(seed)
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=1, features=features)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


def named(path) -> str:
    return re.escape(str(path))


@pytest.mark.parametrize("wrap", [None, "model", "network", "state_dict"])
def test_load_state_dict_plain_or_wrapped(tmp_path, wrap):
    source = unet(seed=1)
    state = source.state_dict()
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, tmp_path / "ckpt.pt")
    target = unet(seed=2)
    assert not torch.equal(target.state_dict()["conv_0.conv_0.conv.weight"], state["conv_0.conv_0.conv.weight"])
    assert load_weights(target, tmp_path / "ckpt.pt") is target
    assert_same_weights(target, source)


def test_loaded_network_gives_same_output(tmp_path):
    source = unet(in_channels=3, seed=1).eval()
    torch.save({"model": source.state_dict()}, tmp_path / "ckpt.pt")
    target = load_weights(unet(in_channels=3, seed=5), str(tmp_path / "ckpt.pt")).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))


def test_missing_file(tmp_path):
    path = tmp_path / "absent.pt"
    with pytest.raises(InputError, match=f"checkpoint does not exist: {named(path)}"):
        load_weights(unet(), path)


def test_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(InputError, match="checkpoint does not exist"):
        load_weights(unet(), tmp_path)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(np.random.default_rng(seed).bytes(2048))
    with pytest.raises(InputError, match=f"cannot read checkpoint {named(path)}: "):
        load_weights(unet(), path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save(unet().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=f"cannot read checkpoint {named(path)}: "):
        load_weights(unet(), path)


def test_empty_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.touch()
    with pytest.raises(InputError, match=f"cannot read checkpoint {named(path)}"):
        load_weights(unet(), path)


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save(unet(), path)
    with pytest.raises(InputError, match=f"cannot read checkpoint {named(path)}: UnpicklingError"):
        load_weights(unet(), path)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(InputError, match=f"checkpoint {named(path)} holds a list, not a state dict"):
        load_weights(unet(), path)


def test_other_in_channels_names_parameter(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save(unet(in_channels=3).state_dict(), path)
    message = (
        f"weights {named(path)} do not fit the network of the config: it holds a BasicUNet with 3 input "
        r"channel\(s\) and features \(4, 4, 8, 8, 16, 4\); the config builds one with 1 input channel"
    )
    with pytest.raises(InputError, match=message):
        load_weights(unet(in_channels=1), path)


def test_other_features_names_parameter(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": unet(features=(8, 8, 16, 16, 32, 8)).state_dict()}, path)
    message = r"holds a BasicUNet with 1 input channel\(s\) and features \(8, 8, 16, 16, 32, 8\); the config builds"
    with pytest.raises(InputError, match=message):
        load_weights(unet(), path)


def test_mismatch_leaves_network_untouched(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save(unet(in_channels=3).state_dict(), path)
    network = unet(seed=4)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    with pytest.raises(InputError):
        load_weights(network, path)
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key])


def test_missing_and_unexpected_keys(tmp_path):
    state = unet().state_dict()
    first = next(iter(state))
    missing = {k: v for k, v in state.items() if k != first}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(InputError, match=rf"missing \['{re.escape(first)}'\]"):
        load_weights(unet(), tmp_path / "missing.pt")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(InputError, match=r"unexpected \['extra.weight'\]"):
        load_weights(unet(), tmp_path / "extra.pt")
