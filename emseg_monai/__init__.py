"""emseg-monai: semi-supervised mitochondria segmentation of EM stacks with spatial continuity.

Subpackages follow the pipeline: ``io`` (read/write stacks), ``data`` (synthetic stacks, slices,
datasets), ``transforms`` (piecewise affine, MPP, windows), ``networks``, ``inference``,
``evaluation``; ``cli`` is the ``emseg`` command.
"""

from __future__ import annotations

import inspect
from pathlib import Path

__version__ = "0.8.12"


def default_bundle_root() -> str:
    """The bundle folder: ``bundle/`` beside the package in a source checkout, else ``"."``.

    Bundle configs use this as ``bundle_root`` so they run from any working directory in a
    checkout (editable install); a bundle downloaded on its own is run from its folder, or with
    ``--bundle_root``.
    """
    candidate = Path(__file__).resolve().parent.parent / "bundle"
    return str(candidate) if (candidate / "configs").is_dir() else "."


def bundle_root() -> str:
    """The folder of the bundle whose config is being run: the parent of its ``configs/`` folder.

    Bundle configs use this as ``bundle_root``, so ``python -m monai.bundle run --config_file
    RUN/configs/inference.yaml`` finds ``RUN/models`` from any working directory, for the shipped
    bundle and for every training run alike. It is read from the ``ConfigWorkflow`` (MONAI's
    ``run``, ``create_workflow``) that evaluates the config, with MONAI's own rule for where a
    bundle's root is; outside one (a bare ``ConfigParser``), ``"."``, the model zoo's convention.
    ``--bundle_root DIR`` on the command line overrides it as usual.
    """
    from monai.bundle import ConfigWorkflow

    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, ConfigWorkflow) and getattr(owner, "config_root_path", None) is not None:
                configs = Path(owner.config_root_path).resolve()
                return str(configs.parent if configs.name == "configs" else configs)
            frame = frame.f_back
    finally:
        del frame
    return "."
