"""The local driver: both block-wise passes in this process, one block at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emseg_monai.inference.block import BlockPlan, block_mask, block_probs, mark, marker
from emseg_monai.inference.settings import InferenceSettings


def run_local(
    volume: Any,
    probs: Any,
    target: Any,
    plan: BlockPlan,
    networks: tuple[torch.nn.Module, torch.nn.Module | None],
    settings: InferenceSettings,
    progress: bool = True,
) -> Iterator[np.ndarray]:
    """Run pass 1 over ``plan.stage1_todo``, then yield pass 2's masks of ``plan.todo`` in order.

    Pass 1 writes each block's stage-1 probabilities into ``probs`` (a Zarr array, None without
    an SCM) and marks it done. Pass 2 writes each mask into ``target`` (a Zarr array) and marks it,
    or, with ``target`` None, only yields it (a TIFF writer consumes them page by page).
    """
    final_step = "scm" if networks[1] is not None else "stage1"
    total = len(plan.stage1_todo) + len(plan.todo)
    bar = tqdm(total=total, desc="blocks", unit="block", disable=None if progress else True)
    try:
        for z0, z1 in plan.stage1_todo:
            probs[z0:z1] = block_probs(volume, z0, z1, plan.value_range, networks[0], settings)
            mark(marker(plan.done_dir, "stage1", z0, z1))
            bar.update(1)
        for z0, z1 in plan.todo:
            mask = block_mask(volume, probs, z0, z1, plan.value_range, networks, settings)
            if target is not None:
                target[z0:z1] = mask
                mark(marker(plan.done_dir, final_step, z0, z1))
            bar.update(1)
            yield mask
    finally:
        bar.close()
