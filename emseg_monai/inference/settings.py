"""One frozen object for every inference option, built once from the config and checked there."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from emseg_monai.errors import InputError
from emseg_monai.inference.backends import check_backend
from emseg_monai.options import as_bool, as_choice, as_float, as_int, as_optional_float
from emseg_monai.transforms.windows import smoothing_reach, smoothing_sigmas

INPUT_KINDS = ("prob", "mask")


def check_device(device: Any) -> torch.device:
    """``device`` as a ``torch.device`` that exists here; InputError naming it otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r} ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but this torch has no usable CUDA GPU (use cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) here")
    return dev


@dataclass(frozen=True)
class InferenceSettings:
    """How to run stage 1 and the SCM over a (Z, Y, X) stack; the values are checked on creation.

    Parameters
    ----------
    window : int
        N, the SCM's input slices z - N//2 .. z + N//2 (odd, as trained).
    input_kind : str
        ``"prob"`` (stage-1 probabilities) or ``"mask"`` (binarised), as the SCM was trained.
    stage1_downsample, scm_downsample : float
        XY resolution factor (>= 1) at which each network runs, as trained.
    threshold : float
        Probability threshold of masks, in [0, 1].
    batch_size : int
        Slices per forward pass.
    flips : bool
        Average the 4 flips at test time (4x slower), of the final stage only: the SCM, or stage 1
        where it runs alone.
    stage1_flips : bool
        Average stage 1's 4 flips also where the SCM reads its probabilities (4x slower stage 1).
        Runs on thick sections (Z/XY >= 2) write true: on three 40 nm proxies of serial sections
        the SCM on flip-averaged stage 1 gained +0.3 to +0.8 Dice over the same SCM on one pass,
        on a 20 nm one +0.2 (docs/results.md, "Flips of stage 1 on thick sections"); on EPFL's
        5 nm sections it lost 0.36 on unseen slices (two-seed mean).
    smoothing : float
        Standard deviation of a 3D Gaussian on the SCM's probabilities at its resolution, before
        they are resized and thresholded: this many slices along Z and network pixels in Y and X
        (at ``scm_downsample`` 2, 1.5 means (1.5, 3, 3) input voxels); 0: none. Stage 1 alone is
        never smoothed. On EPFL +0.1 to +0.3 Dice (docs/results.md, "Smoothing the final probabilities").
    smoothing_z : float or None
        The Gaussian's standard deviation along Z alone, in slices (``smoothing`` then acts in Y and
        X only); None: ``smoothing`` in all three axes. 0 keeps each slice's own SCM output, for
        sections that do not line up in Y and X (docs/results.md, "A rough serial-section stack").
    tile : int
        Slices larger than this (at network resolution) run in blended tiles; 0: never tile.
    backend : str
        ``auto``, ``torch``, ``onnx``, ``channels_last`` or ``bf16`` (see ``backends``).
    use_scm : bool
        Run the SCM after stage 1 (else the stage-1 masks are final).
    keep_stage1 : bool
        The inferer also returns the stage-1 probabilities (written as ``*_stage1_prob``).
    device : str
        Where the networks run (``cpu``, ``cuda``, ``cuda:1``).

    Booleans may arrive as text from a bundle command line (``--flips false``): see ``as_bool``.
    """

    window: int = 15
    input_kind: str = "prob"
    stage1_downsample: float = 1.0
    scm_downsample: float = 1.0
    threshold: float = 0.5
    batch_size: int = 4
    flips: bool = False
    stage1_flips: bool = False
    smoothing: float = 1.5
    smoothing_z: float | None = None
    tile: int = 1024
    backend: str = "auto"
    use_scm: bool = True
    keep_stage1: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        from emseg_monai.transforms.windows import check_window

        checked = {
            "window": check_window(as_int(self.window, "SCM window")),
            "input_kind": as_choice(self.input_kind, "SCM input kind", INPUT_KINDS),
            "stage1_downsample": as_float(self.stage1_downsample, "stage1_downsample", minimum=1.0),
            "scm_downsample": as_float(self.scm_downsample, "scm_downsample", minimum=1.0),
            "threshold": as_float(self.threshold, "threshold", 0.0, 1.0),
            "batch_size": as_int(self.batch_size, "batch_size", minimum=1),
            "flips": as_bool(self.flips, "flips"),
            "stage1_flips": as_bool(self.stage1_flips, "stage1_flips"),
            "smoothing": as_float(self.smoothing, "smoothing", minimum=0.0, maximum=8.0),
            "smoothing_z": as_optional_float(self.smoothing_z, "smoothing_z", minimum=0.0, maximum=8.0),
            "tile": as_int(self.tile, "tile_size", minimum=0),
            "backend": check_backend(self.backend),
            "use_scm": as_bool(self.use_scm, "use_scm"),
            "keep_stage1": as_bool(self.keep_stage1, "save_stage1"),
            "device": str(check_device(self.device)),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def scm_halo(self) -> int:
        """Slices of stage-1 probabilities on each side that one final SCM slice depends on: the
        window's N // 2 plus the smoothing's reach along Z (``transforms.windows.smoothing_reach``)."""
        return self.window // 2 + smoothing_reach(self.z_smoothing)

    @property
    def z_smoothing(self) -> float:
        """The SCM output's Gaussian standard deviation along Z, in slices (``smoothing_z``, else ``smoothing``)."""
        return smoothing_sigmas(self.smoothing, self.smoothing_z)[0]

    def replace(self, **changes: Any) -> InferenceSettings:
        """A copy with ``changes`` applied (and checked)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return InferenceSettings(**values)

    def record(self) -> dict[str, Any]:
        """The settings that decide the masks, as plain values (block-wise resume compares them)."""
        skip = ("device", "batch_size", "keep_stage1")
        found = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        found["smoothing_z"] = self.z_smoothing  # unset or the same sigma: the same masks
        return found
