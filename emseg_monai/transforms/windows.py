"""Windows of neighbouring slices: the SCM's N-channel input for each slice of a (Z, Y, X) stack."""

from __future__ import annotations

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from emseg_monai.errors import InputError

SMOOTHING_TRUNCATE = 4.0  # the Gaussian's kernel reaches this many standard deviations


def smoothing_reach(smoothing: float) -> int:
    """Slices on each side that a Gaussian of standard deviation ``smoothing`` slices reads (the
    SCM's output smoothing in ``predict_stack``)."""
    return int(SMOOTHING_TRUNCATE * float(smoothing) + 0.5) if smoothing > 0 else 0


def smoothing_sigmas(smoothing: float, smoothing_z: float | None = None) -> tuple[float, float, float]:
    """(Z, Y, X) standard deviations of the SCM output's Gaussian: ``smoothing_z`` along Z where it
    is set (None: ``smoothing``), ``smoothing`` in Y and X. In slices along Z, network pixels in Y, X."""
    along_yx = float(smoothing)
    return (along_yx if smoothing_z is None else float(smoothing_z), along_yx, along_yx)


def check_window(window: int) -> int:
    """Return ``window`` as int after checking it is odd and >= 1 (InputError otherwise)."""
    try:
        ok = not isinstance(window, bool) and int(window) == window and window >= 1 and window % 2 == 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"SCM window must be an odd integer >= 1, got {window!r}")
    return int(window)


def window_indices(centers: np.ndarray | int, n_slices: int, window: int) -> np.ndarray:
    """Slice indices of the windows centred on ``centers``; stack ends repeat the end slice.

    Parameters
    ----------
    centers : int or (B,) int array
        Centre slice(s) z.
    n_slices : int
        Z, the number of slices.
    window : int
        N, odd: the window is z - N//2 .. z + N//2.

    Returns
    -------
    numpy.ndarray
        (B, N) int64 indices in [0, n_slices) ((N,) for a scalar centre).

    Examples
    --------
    >>> window_indices(0, 10, 5).tolist()
    [0, 0, 0, 1, 2]
    """
    half = check_window(window) // 2
    centers_arr = np.asarray(centers, dtype=np.int64)
    offsets = np.arange(-half, half + 1, dtype=np.int64)
    return np.clip(centers_arr[..., None] + offsets, 0, n_slices - 1)


def scm_inputs(prob: np.ndarray, input_kind: str = "prob", threshold: float = 0.5) -> np.ndarray:
    """SCM input stack from stage-1 probabilities stored as uint8 0..255 (or float 0..1).

    ``input_kind`` ``"prob"`` gives the probabilities as float32 in [0, 1]; ``"mask"`` gives the
    binarised masks (probability >= ``threshold``) as float32 0/1, as in the paper.
    """
    prob = np.asarray(prob)
    scale = 255.0 if prob.dtype == np.uint8 else 1.0
    if input_kind == "prob":
        return prob.astype(np.float32) / np.float32(scale)
    if input_kind == "mask":
        return (prob >= threshold * scale).astype(np.float32)
    raise InputError(f"SCM input must be 'prob' or 'mask', got {input_kind!r}")


def extract_windows(stack: np.ndarray, centers: np.ndarray | int, window: int) -> np.ndarray:
    """Gather (B, N, Y, X) windows (or (N, Y, X) for one centre) from a (Z, Y, X) stack; a new array."""
    return np.asarray(stack)[window_indices(centers, stack.shape[0], window)]


class SliceWindow(Transform):
    """Array transform: (Z, Y, X) stack -> (N, Y, X) window around slice ``center``.

    Slices beyond the stack repeat its first or last slice. The dtype is kept.

    Examples
    --------
    >>> probs = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 4, 4), np.float32)
    >>> out = SliceWindow(window=3)(probs, center=0)
    >>> out.shape, out[:, 0, 0].tolist()
    ((3, 4, 4), [0.0, 0.0, 1.0])
    """

    def __init__(self, window: int = 15) -> None:
        self.window = check_window(window)

    def __call__(self, stack: np.ndarray, center: int) -> np.ndarray:  # type: ignore[override]
        return extract_windows(stack, int(center), self.window)


class SliceWindowd(MapTransform):
    """Dictionary transform: replace each (Z, Y, X) stack in ``keys`` by its window around ``data[center_key]``.

    Examples
    --------
    >>> d = {"image": np.zeros((10, 8, 8), np.float32), "slice": 4}
    >>> SliceWindowd("image", window=5)(d)["image"].shape
    (5, 8, 8)
    """

    def __init__(
        self, keys: KeysCollection, window: int = 15, center_key: str = "slice", allow_missing_keys: bool = False
    ):
        super().__init__(keys, allow_missing_keys)
        self.windower = SliceWindow(window)
        self.center_key = center_key

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.windower(d[key], d[self.center_key])
        return d
