"""Loading trained weights with clear errors for missing, corrupt or mismatched checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from emseg_monai.errors import InputError

logger = logging.getLogger(__name__)


def load_weights(
    network: torch.nn.Module, path: str | Path, map_location: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Load a checkpoint into ``network`` in place and return it.

    Accepts a plain state dict, or a dict holding one under ``"model"`` / ``"network"`` /
    ``"state_dict"`` (as MONAI's ``CheckpointSaver`` writes with several objects).

    Raises
    ------
    InputError
        The file is missing or unreadable, or its weights do not fit ``network`` (the message
        names the first mismatching parameter).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint does not exist: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        if len(first) > 100 or "weights_only" in first:  # torch's long advice on pickles is noise here
            first = "not a weights file saved by torch.save of a state_dict"
        raise InputError(f"cannot read checkpoint {path}: {type(exc).__name__}: {first}") from None
    if isinstance(ckpt, dict):
        for key in ("model", "network", "state_dict"):
            if key in ckpt and isinstance(ckpt[key], dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict):
        raise InputError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a state dict")
    expected = network.state_dict()
    missing = [k for k in expected if k not in ckpt]
    unexpected = [k for k in ckpt if k not in expected]
    wrong = [k for k in expected if k in ckpt and tuple(ckpt[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        held, built = describe_unet(ckpt), describe_unet(expected)
        if held and built and held != built:
            detail = f"it holds a BasicUNet with {held}; the config builds one with {built}"
        elif wrong:
            k = wrong[0]
            detail = f"{k} has shape {tuple(ckpt[k].shape)}, the network expects {tuple(expected[k].shape)}"
        else:
            detail = f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}"
        raise InputError(f"weights {path} do not fit the network of the config: {detail}")
    network.load_state_dict(ckpt)
    return network


def initial_weights(network: torch.nn.Module, path: str | Path | None) -> torch.nn.Module:
    """``network`` with the weights of ``path`` loaded (fine-tuning), or as built when ``path`` is None/empty."""
    if path in (None, "", False):
        return network
    device = next(network.parameters()).device
    logger.info("starting from the weights of %s", path)
    return load_weights(network, path, map_location=device)


_UNET_LAYERS = (
    "conv_0.conv_0.conv.weight",
    "down_1.convs.conv_0.conv.weight",
    "down_2.convs.conv_0.conv.weight",
    "down_3.convs.conv_0.conv.weight",
    "down_4.convs.conv_0.conv.weight",
    "upcat_1.convs.conv_1.conv.weight",
    "final_conv.weight",
)


def describe_unet(state: dict) -> str | None:
    """ "N input channels, features (...)" of a 2D BasicUNet state dict; None for another network."""
    try:
        shapes = [tuple(state[k].shape) for k in _UNET_LAYERS]
    except (KeyError, AttributeError):
        return None
    features = [shapes[i][0] for i in range(5)] + [shapes[5][0]]
    return f"{shapes[0][1]} input channel(s) and features {tuple(features)}"
