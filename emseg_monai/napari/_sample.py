"""Sample data: a small synthetic EM stack and its labels, made on the spot (no download)."""

from __future__ import annotations

from typing import Any

SHAPE = (24, 192, 192)  # (Z, Y, X)


def synthetic_em() -> list[tuple[Any, dict, str]]:
    """napari layer data: the image (uint8) and its mitochondria labels (0/1)."""
    from emseg_monai.data import make_synthetic_stack

    image, label = make_synthetic_stack(SHAPE, seed=0)
    return [
        (image, {"name": "synthetic EM"}, "image"),
        ((label > 0).astype("uint8"), {"name": "synthetic mitochondria", "opacity": 0.4}, "labels"),
    ]
