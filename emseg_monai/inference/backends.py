"""Inference backends: the same trained 2D network run by plain torch, bf16 autocast or ONNX Runtime.

``to_backend(network, name)`` returns a ``torch.nn.Module`` that maps (B, C, Y, X) float32 to
(B, 1, Y, X) float32 logits like ``network`` does, so ``predict_stack`` and the block-wise and Dask
paths take it unchanged (it pickles: an ONNX network ships its model bytes, and each process builds
its own ONNX Runtime session on first use).

Backends (speeds on 2 CPU cores: benchmarks/bench_inference_speed.py and docs/results.md):

- ``torch``: the network itself, in inference mode.
- ``channels_last``: torch with NHWC memory layout.
- ``bf16``: torch under autocast to bfloat16, on the CPU or a CUDA GPU (probabilities moved by up
  to 0.68 on random inputs).
- ``onnx``: the network exported to ONNX and run by ONNX Runtime (installed with the package);
  probabilities differ from torch by about 1e-4.
- ``auto``: ``onnx`` on the CPU when ONNX Runtime is installed, else ``torch``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import logging
import warnings
from typing import Any

import numpy as np
import torch

from emseg_monai.errors import InputError
from emseg_monai.networks.precision import Bfloat16

logger = logging.getLogger(__name__)

# ONNX Runtime sessions of this process, by model digest and thread count (sessions do not pickle;
# a network shipped to a Dask worker in every task finds the session its first copy built)
_SESSIONS: dict[tuple[str, int], Any] = {}
_MAX_SESSIONS = 8

BACKENDS = ("auto", "torch", "channels_last", "bf16", "onnx")


def onnx_available() -> bool:
    """Whether ONNX Runtime and onnx (the exporter writes its format) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def check_backend(name: str) -> str:
    """``name`` if it is a known backend; InputError naming it otherwise."""
    if name not in BACKENDS:
        raise InputError(f"unknown inference backend {name!r} (choose from {', '.join(BACKENDS)})")
    return name


def resolve_backend(name: str, device: str | torch.device = "cpu") -> str:
    """The backend ``name`` stands for on ``device`` (``auto`` -> ``onnx`` or ``torch``).

    Raises InputError for an unknown name, ``onnx`` without ONNX Runtime, or ``onnx`` on a GPU.
    """
    name = check_backend(name)
    gpu = torch.device(device).type != "cpu"
    if name == "auto":
        return "onnx" if not gpu and onnx_available() else "torch"
    if name == "onnx" and not onnx_available():
        raise InputError("backend 'onnx' needs ONNX Runtime: pip install onnx onnxruntime")
    if name == "onnx" and gpu:
        raise InputError(f"backend {name!r} runs on the CPU only, got device {device}")
    return name


def to_backend(
    network: torch.nn.Module | None, name: str = "auto", device: str | torch.device = "cpu", threads: int = 0
) -> torch.nn.Module | None:
    """``network`` wrapped for backend ``name`` (see the module docstring); None stays None.

    ``threads`` > 0 sets ONNX Runtime's intra-op threads (default: torch's thread count).
    """
    if network is None:
        return None
    name = resolve_backend(name, device)
    network.eval()
    if name == "torch":
        return network
    if name == "channels_last":
        return ChannelsLast(network)
    if name == "bf16":
        return Bfloat16(network)
    return OnnxNetwork.from_torch(network, threads=threads)


class ChannelsLast(torch.nn.Module):
    """Runs a channels-last copy of ``network`` on NHWC tensors; same inputs and outputs."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        with torch.no_grad():
            self.network = copy.deepcopy(network).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.contiguous(memory_format=torch.channels_last)).contiguous()


class OnnxNetwork(torch.nn.Module):
    """A 2D network exported to ONNX (batch, Y and X dynamic) and run by ONNX Runtime on the CPU.

    Holds the serialised model; the session is built in each process on first use and kept outside
    the module (``_SESSIONS``, by the model's digest), so the module pickles (Dask ships it to
    workers) and its copies share one session per process.
    """

    def __init__(self, model: bytes, threads: int = 0) -> None:
        super().__init__()
        self.model = model
        self.threads = threads
        self.digest = hashlib.sha1(model).hexdigest()

    @classmethod
    def from_torch(cls, network: torch.nn.Module, threads: int = 0, size: int = 64) -> OnnxNetwork:
        """Export ``network`` (its first layer gives the input channels) to ONNX in memory."""
        example = torch.zeros((1, _in_channels(network), size, size))
        buffer = io.BytesIO()
        # the TorchScript-based exporter: 0.2 s here, against about 6 s for the dynamo exporter
        with warnings.catch_warnings(), _quiet_exporter(), _shape_generic_upcat(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network.cpu().eval(),
                (example,),
                buffer,
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={name: {0: "batch", 2: "height", 3: "width"} for name in ("image", "logits")},
            )
        return cls(buffer.getvalue(), threads)

    @property
    def session(self):
        """This process's ONNX Runtime session, built on first use."""
        key = (self.digest, self.threads)
        if key not in _SESSIONS:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads or torch.get_num_threads()
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            options.enable_mem_pattern = False  # same speed here, 360 MB less for both networks at 1024 x 1024
            if _shared_arena():
                options.add_session_config_entry("session.use_env_allocators", "1")
            if len(_SESSIONS) >= _MAX_SESSIONS:
                _SESSIONS.pop(next(iter(_SESSIONS)))
            _SESSIONS[key] = ort.InferenceSession(self.model, options, providers=["CPUExecutionProvider"])
        return _SESSIONS[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1, Y, X) of ``x`` (B, C, Y, X), one slice per ONNX Runtime call.

        Batches of one are as fast per slice here and keep ONNX Runtime's memory at one slice's
        activations (a batch of 4 at 1024 x 1024 took 4.5 GB, one slice 1.6 GB with both networks).
        """
        if x.device.type != "cpu":
            raise InputError(f"the ONNX backend runs on the CPU, got a tensor on {x.device}")
        session = self.session
        name = session.get_inputs()[0].name
        array = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
        return torch.from_numpy(np.concatenate([session.run(None, {name: array[i : i + 1]})[0] for i in range(len(x))]))


@functools.cache
def _shared_arena() -> bool:
    """Register one CPU memory arena for all sessions of this process (once); whether it exists.

    Each session otherwise keeps its own arena at its peak size, so the stage-1 and SCM sessions
    would hold twice the memory one of them needs.
    """
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    try:
        # arena grown by what is asked for, not in doubling steps
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))
    except Exception as exc:  # an older ONNX Runtime, or one registered by someone else
        logger.debug("no shared ONNX Runtime arena: %s", exc)
        return False
    return True


def _in_channels(network: torch.nn.Module) -> int:
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d):
            return module.in_channels
    raise InputError(f"cannot find the input channels of {type(network).__name__} (no Conv2d layer)")


class _shape_generic_upcat:
    """Export MONAI ``UpCat`` with its odd-size padding written as tensor arithmetic.

    ``UpCat`` pads the upsampled features by one pixel where max-pooling floored an odd length, a
    Python ``if`` on the traced shape that the exporter would freeze for the example's size. Here
    the pad is ``encoder size - upsampled size`` (0 or 1) per axis, always applied: the same result
    for every size, and an ONNX graph that stays right for slices whose sides are not multiples of 16.
    """

    def __enter__(self):
        from monai.networks.nets.basic_unet import UpCat

        self.original = UpCat.forward

        def forward(module, x: torch.Tensor, x_e: torch.Tensor | None):
            x_0 = module.upsample(x)
            if x_e is None:
                return module.convs(x_0)
            if module.is_pad:
                pad = []
                for axis in range(x.ndim - 2):
                    pad += [0, x_e.shape[-axis - 1] - x_0.shape[-axis - 1]]
                x_0 = torch.nn.functional.pad(x_0, pad, "replicate")
            return module.convs(torch.cat([x_e, x_0], dim=1))

        UpCat.forward = forward

    def __exit__(self, *exc):
        from monai.networks.nets.basic_unet import UpCat

        UpCat.forward = self.original


class _quiet_exporter:
    """Silence the ONNX exporter's progress lines on the ``torch.onnx`` loggers while exporting."""

    def __enter__(self):
        self.saved = []
        for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir"):
            log = logging.getLogger(name)
            self.saved.append((log, log.level))
            log.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for log, level in self.saved:
            log.setLevel(level)
