"""A weights bundle's networks and inference settings, built from its own ``inference.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from emseg_monai.inference.settings import InferenceSettings


def load_bundle_networks(
    bundle: str | Path | None = None, device: str = "cpu", **overrides: Any
) -> tuple[torch.nn.Module, torch.nn.Module | None, InferenceSettings, Path]:
    """(stage 1, SCM or None, settings, bundle folder) of a bundle (None: the shipped one), in eval mode.

    ``overrides`` set ``inference.yaml`` keys first (``backend="torch"``, ``use_scm=False`` ...);
    the networks are plain torch modules unless ``backend`` says otherwise.
    """
    from monai.bundle import ConfigParser

    from emseg_monai.workflows import config_path, resolve_bundle

    root = resolve_bundle(bundle)
    parser = ConfigParser()
    parser.read_config(config_path("inference.yaml", root))
    parser["bundle_root"] = str(root)
    parser["device"] = device
    parser["backend"] = overrides.pop("backend", "torch")
    for key, value in overrides.items():
        parser[key] = value
    stage1 = parser.get_parsed_content("network").eval()
    scm = parser.get_parsed_content("scm_network")
    return stage1, scm.eval() if scm is not None else None, parser.get_parsed_content("settings"), root
