"""Labeled-slice specifications: which slices of a stack carry ground truth."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from emseg_monai.errors import InputError


def parse_slice_spec(spec: str | int | Iterable[int], n_slices: int) -> np.ndarray:
    """Turn a labeled-slice specification into sorted, unique slice indices.

    Parameters
    ----------
    spec : str, int or iterable of int
        One of:

        - ``"every:K"``: every K-th slice from 0 (``"every:5"`` on 165 slices: 0, 5, ..., 160);
        - comma-separated items, each an index ``"7"`` or a Python slice ``"start:stop:step"``
          (``"0:160:5"`` gives 0, 5, ..., 155; ``"::5"`` gives every 5th slice);
        - ``"all"`` or ``"none"``;
        - an int (one slice) or an iterable of ints.
    n_slices : int
        Number of slices Z in the stack.

    Returns
    -------
    numpy.ndarray
        int64 indices, sorted and unique; empty only for ``"none"``.

    Raises
    ------
    InputError
        A malformed spec, an index outside [0, n_slices), or a spec that selects no slice.

    Examples
    --------
    >>> parse_slice_spec("0:20:5", 30).tolist()
    [0, 5, 10, 15]
    >>> parse_slice_spec("every:10", 25).tolist()
    [0, 10, 20]
    """
    if isinstance(spec, (int, np.integer)):
        items: list[int] = [int(spec)]
    elif isinstance(spec, str):
        text = spec.strip().lower()
        if text == "none":
            return np.zeros(0, dtype=np.int64)
        if text == "all":
            return np.arange(n_slices, dtype=np.int64)
        items = _parse_text(spec, n_slices)
    else:
        try:
            items = [int(v) for v in spec]
            if any(int(v) != v for v in spec):
                raise ValueError
        except (TypeError, ValueError):
            raise InputError(f"labeled-slice spec must be a string or a list of integers, got {spec!r}") from None
    bad = [i for i in items if not 0 <= i < n_slices]
    if bad:
        raise InputError(f"labeled slices {bad[:5]} are outside the stack of {n_slices} slices (0..{n_slices - 1})")
    if not items:
        raise InputError(f"labeled-slice spec {spec!r} selects no slice of a stack of {n_slices} slices")
    return np.unique(np.asarray(items, dtype=np.int64))


def _parse_text(spec: str, n_slices: int) -> list[int]:
    items: list[int] = []
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if part.startswith("every:"):
                step = int(part.split(":", 1)[1])
                if step < 1:
                    raise ValueError
                items.extend(range(0, n_slices, step))
            elif ":" in part:
                fields = [int(f) if f else None for f in part.split(":")]
                if len(fields) > 3 or (len(fields) == 3 and fields[2] == 0):
                    raise ValueError
                start, stop, step = (fields + [None, None])[:3]
                stop = n_slices if stop is None else stop
                if start is not None and start >= n_slices or stop > n_slices:
                    raise InputError(f"labeled-slice range {part!r} reaches outside the stack of {n_slices} slices")
                items.extend(range(start or 0, stop, step or 1))
            else:
                items.append(int(part))
        except InputError:
            raise
        except ValueError:
            raise InputError(f"cannot parse labeled-slice spec {spec!r} (bad item {part!r})") from None
    return items


def complement(indices: np.ndarray, n_slices: int) -> np.ndarray:
    """Slice indices in [0, n_slices) not in ``indices`` (the unlabeled slices), int64."""
    keep = np.ones(n_slices, dtype=bool)
    keep[np.asarray(indices, dtype=np.int64)] = False
    return np.flatnonzero(keep).astype(np.int64)


def evenly_spaced(n_labels: int, n_slices: int) -> np.ndarray:
    """``n_labels`` slice indices spread evenly over [0, n_slices), int64, unique."""
    if not 1 <= n_labels <= n_slices:
        raise InputError(f"number of labeled slices must be in 1..{n_slices}, got {n_labels}")
    return np.unique(np.round(np.linspace(0, n_slices - 1, n_labels)).astype(np.int64))
