"""emseg-monai: semi-supervised mitochondria segmentation of EM stacks with spatial continuity.

Subpackages follow the pipeline: ``io`` (read/write stacks), ``data`` (synthetic stacks, slices,
datasets), ``transforms`` (piecewise affine, MPP, windows), ``networks``, ``inference``,
``evaluation``; ``cli`` is the ``emseg`` command.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


def default_bundle_root() -> str:
    """The bundle folder: ``bundle/`` beside the package in a source checkout, else ``"."``.

    Bundle configs use this as ``bundle_root`` so they run from any working directory in a
    checkout (editable install); a bundle downloaded on its own is run from its folder, or with
    ``--bundle_root``.
    """
    candidate = Path(__file__).resolve().parent.parent / "bundle"
    return str(candidate) if (candidate / "configs").is_dir() else "."
