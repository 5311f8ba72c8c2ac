"""Which device to run on: the default one (configs, CLI, napari) and that of one data-parallel process."""

from __future__ import annotations

import torch

from emseg_monai.errors import InputError


def default_device() -> torch.device:
    """The first CUDA GPU where torch sees one, else the CPU (the configs' and tools' default ``device``).

    Examples
    --------
    >>> default_device().type in ("cuda", "cpu")
    True
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def process_device(local_rank: int) -> torch.device:
    """``cuda:<local_rank>`` where CUDA GPUs are visible, else the CPU (gloo processes).

    Raises InputError, in one line, when torchrun started more processes on this machine than it
    has GPUs: process ``local_rank`` would have no GPU of its own.

    Examples
    --------
    >>> process_device(0) if not torch.cuda.is_available() else torch.device("cpu")
    device(type='cpu')
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if not 0 <= int(local_rank) < count:
        raise InputError(
            f"training process LOCAL_RANK={local_rank} has no GPU: this machine has {count} CUDA GPU(s); start "
            f"torchrun with --nproc_per_node {count} or fewer (or CUDA_VISIBLE_DEVICES='' for CPU processes)"
        )
    return torch.device(f"cuda:{int(local_rank)}")
