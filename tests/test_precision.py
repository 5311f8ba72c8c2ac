"""bf16 training: the wrapper trains the wrapped network's own float32 weights; bad settings refused."""

import pytest
import torch
from monai.networks.nets import BasicUNet

from emseg_monai.cli import main
from emseg_monai.errors import InputError
from emseg_monai.networks import Bfloat16, with_precision
from tests.conftest import TINY_FEATURES
from tests.test_cli import train_argv


def test_bf16_wrapper_trains_the_float32_weights():
    torch.manual_seed(0)
    net = BasicUNet(2, 1, 1, features=TINY_FEATURES)
    wrapped = with_precision(net, "bf16", "cpu")
    assert isinstance(wrapped, Bfloat16) and wrapped.network is net
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.rand((2, 1, 32, 32))
    out = wrapped(x)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 32, 32)
    torch.nn.functional.binary_cross_entropy_with_logits(out, (x > 0.5).float()).backward()
    optimizer.step()
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert set(net.state_dict()) == set(BasicUNet(2, 1, 1, features=TINY_FEATURES).state_dict())
    with torch.no_grad():  # bfloat16 forward stays close to float32
        assert float((torch.sigmoid(wrapped(x)) - torch.sigmoid(net(x))).abs().max()) < 0.1


def test_float32_is_the_network_itself_and_bad_settings_fail():
    net = torch.nn.Conv2d(1, 1, 3)
    assert with_precision(net, "float32") is net
    with pytest.raises(InputError, match="unknown precision 'fp8'"):
        with_precision(net, "fp8")
    assert isinstance(with_precision(net, "bf16", "cuda"), Bfloat16)  # CUDA autocast
    with pytest.raises(InputError, match="CPU or a CUDA GPU, got device mps"):
        with_precision(net, "bf16", "mps")


def test_cli_trains_in_bf16(tiny_data, tmp_path, capsys, monkeypatch):
    calls = []
    original = Bfloat16.forward
    monkeypatch.setattr(Bfloat16, "forward", lambda self, x: calls.append(x.shape) or original(self, x))
    out = tmp_path / "run"
    assert main(["--quiet", *train_argv(tiny_data, out, "--precision", "bf16")]) == 0
    assert len(calls) == 4  # 2 iterations of stage 1 and 2 of the SCM went through bfloat16
    for name in ("model.pt", "scm.pt"):
        state = torch.load(out / "models" / name, weights_only=True)
        assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    capsys.readouterr()
    assert main(train_argv(tiny_data, tmp_path / "bad", "--precision", "half")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown precision 'half'" in err[0]
    assert not (tmp_path / "bad" / "models").exists()


def test_auto_follows_the_hardware(monkeypatch, caplog):
    from emseg_monai.networks import precision

    net = torch.nn.Conv2d(1, 1, 3)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert precision.native_bf16("cpu") and precision.resolve_precision("auto", "cpu") == "bf16"
    with caplog.at_level("INFO", logger="emseg_monai.networks.precision"):
        assert isinstance(with_precision(net, "auto", torch.device("cpu")), Bfloat16)
    assert "precision auto: bf16 on cpu" in caplog.text
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert precision.resolve_precision("auto", "cpu") == "float32"
    assert with_precision(net, "auto", "cpu") is net
    assert precision.resolve_precision("auto", "mps") == "float32"  # no bf16 in hardware assumed there
    assert precision.resolve_precision("float32", "mps") == "float32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not precision.native_bf16("cuda")  # no CUDA device: nothing to ask
