"""``StackInferer``: stage 1 then the SCM as one MONAI ``Inferer``, for evaluators and bundle workflows."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer

from emseg_monai.errors import InputError
from emseg_monai.inference.backends import to_backend
from emseg_monai.inference.settings import InferenceSettings
from emseg_monai.inference.stages import scm, stage1
from emseg_monai.transforms.stacks import intensity_range


class StackInferer(Inferer):
    """Segment whole stacks: ``network`` (stage 1) on every slice, then the SCM on every N-slice window.

    Called as MONAI inferers are, ``inferer(inputs, network)``: ``inputs`` is a batch of raw
    stacks (B, 1, Z, Y, X) of any dtype (``LoadStackd`` keeps the stored one), ``network`` the
    stage-1 network. Each stack is normalised by its own 0.5 and 99.5 percentiles (as
    ``NormalizeStack`` does), 16 slices at a time on the way into the network, so no float copy of
    the stack is made and the masks equal block-wise ones. Both networks run with
    ``settings.backend`` (ONNX Runtime by default on the CPU); each is converted once, on first use.

    Parameters
    ----------
    settings : InferenceSettings
        Resolution, window, threshold, batch size, flips, backend, device.
    scm_network : torch.nn.Module or None
        The SCM, (B, N, y, x) -> (B, 1, y, x) logits; None (or ``settings.use_scm`` false):
        stage 1 only.
    progress : bool
        Progress bars for each stage.

    Returns (from ``__call__``)
    ---------------------------
    torch.Tensor
        (B, C, Z, Y, X) uint8 probabilities x 255 on the CPU; channel 0 the final output, channel
        1 the stage-1 output when ``settings.keep_stage1``.
    """

    def __init__(
        self, settings: InferenceSettings, scm_network: torch.nn.Module | None = None, progress: bool = True
    ) -> None:
        super().__init__()
        if not isinstance(settings, InferenceSettings):
            raise InputError(f"StackInferer needs InferenceSettings, got {type(settings).__name__}")
        self.settings = settings
        self.scm_network = scm_network if settings.use_scm else None
        self.progress = progress
        self._ready: dict[int, tuple[weakref.ref, torch.nn.Module]] = {}

    def ready(self, network: torch.nn.Module | None) -> torch.nn.Module | None:
        """``network`` converted for the settings' backend (cached per network object)."""
        if network is None:
            return None
        key = id(network)
        cached = self._ready.get(key)
        if cached is None or cached[0]() is not network:
            converted = to_backend(network, self.settings.backend, self.settings.device)
            cached = (weakref.ref(network), converted)
            self._ready[key] = cached
        return cached[1]

    def networks(self, network: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        """(stage 1, SCM or None), ready to run; block-wise jobs call the stages with these."""
        return self.ready(network), self.ready(self.scm_network)

    def segment_array(self, image: np.ndarray, network: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """(final, stage-1) uint8 probabilities (Z, Y, X) of one raw (Z, Y, X) stack of any dtype."""
        first, second = self.networks(network)
        value_range = intensity_range(image)
        prob1 = stage1(first, image, self.settings, value_range, self.progress, scm_follows=second is not None)
        final = prob1 if second is None else scm(second, prob1, self.settings, progress=self.progress)
        return final, prob1

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        if inputs.ndim != 5 or inputs.shape[1] != 1:
            raise InputError(f"StackInferer expects (B, 1, Z, Y, X) stacks, got shape {tuple(inputs.shape)}")
        outputs = []
        for item in inputs:
            image = np.asarray(item[0].detach().cpu().numpy())
            final, prob1 = self.segment_array(image, network)
            channels = (final, prob1) if self.settings.keep_stage1 else (final,)
            outputs.append(torch.from_numpy(np.stack(channels)))
        return torch.stack(outputs)
