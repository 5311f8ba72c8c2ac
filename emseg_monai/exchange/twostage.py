"""Both stages as one torch module: normalised intensities in, the final probabilities out.

This is what a bioimage.io consumer runs (``exchange.bioimageio``): one graph, so Fiji, ilastik or
napari get our masks without knowing there are two networks. It computes what ``inference.stages``
does (the probabilities rounded to 1/255 between the stages, as the stage files store them; stack
ends repeating the end slice in the SCM's windows), with two restrictions that keep the graph free
of shape-dependent branches, so that it exports to ONNX with dynamic sizes:

- the XY resolution factors are whole numbers ``k`` and the slice sides multiples of ``16 k``
  (4 poolings of the U-Net at network resolution): shrinking is then a ``k x k`` average pool and
  growing a bilinear ``x k``, exactly what ``resize_tensor`` does at those sizes;
- slices are not tiled (``tile_size``): a consumer runs whole slices (or tiles them itself).

Slices that are entirely 0 at a stack's ends count as padding (a consumer's halo): the windows
repeat the last other slice there. A real end slice that is entirely 0 after normalisation (a
blank section) is treated the same way, where ``emseg segment`` would use it as it is.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from emseg_monai.errors import InputError
from emseg_monai.transforms.windows import smoothing_reach, smoothing_sigmas


def whole_factor(downsample: float, name: str) -> int:
    """``downsample`` as an int >= 1; InputError when it is not a whole number."""
    value = float(downsample)
    if value < 1 or value != int(value):
        raise InputError(f"{name} must be a whole number >= 1 for a single-graph export, got {downsample}")
    return int(value)


class _Stage(torch.nn.Module):
    """A 2D network at 1/``factor`` resolution, ``chunk`` inputs per forward pass (0: all at once).

    Takes the inputs already shrunk (``shrink``); returns sigmoid probabilities grown back to the
    full slice, clamped to [0, 1]. With ``index`` (M, N) the inputs are windows ``small[index]``,
    built chunk by chunk so that no (M, N, y, x) copy of the stack is made.
    """

    def __init__(self, net: torch.nn.Module, factor: int, chunk: int) -> None:
        super().__init__()
        self.net = net
        self.factor = int(factor)
        self.chunk = int(chunk)

    def shrink(self, slices: torch.Tensor) -> torch.Tensor:
        """(B, C, Y, X) -> (B, C, Y / factor, X / factor), averaging factor x factor blocks."""
        return F.avg_pool2d(slices, self.factor) if self.factor > 1 else slices

    def grow(self, prob: torch.Tensor) -> torch.Tensor:
        """(B, 1, y, x) probabilities at network resolution -> full slice size, clamped to [0, 1]."""
        if self.factor > 1:
            prob = F.interpolate(prob, scale_factor=float(self.factor), mode="bilinear", align_corners=False)
        return prob.clamp(0.0, 1.0)

    def _one(self, inputs: torch.Tensor, grow: bool) -> torch.Tensor:
        prob = torch.sigmoid(self.net(inputs))
        return self.grow(prob) if grow else prob

    def forward(self, small: torch.Tensor, index: torch.Tensor | None = None, grow: bool = True) -> torch.Tensor:
        if self.chunk <= 0:
            return self._one(small if index is None else small[index], grow)
        count = small.shape[0] if index is None else index.shape[0]
        parts = []
        for start in range(0, count, self.chunk):
            stop = min(start + self.chunk, count)
            parts.append(self._one(small[start:stop] if index is None else small[index[start:stop]], grow))
        return torch.cat(parts, 0)


def gaussian_weights(sigma: float) -> torch.Tensor:
    """The normalised 1D Gaussian (2 r + 1,) float32 that ``predict_stack``'s smoothing uses (r its reach)."""
    radius = smoothing_reach(sigma)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * offsets**2 / float(sigma) ** 2)
    return torch.from_numpy((weights / weights.sum()).astype(np.float32))


def _neighbours(batch: int, z: int, half: int, first: torch.Tensor, last: torch.Tensor, mirror: bool) -> torch.Tensor:
    """(B * Z, 2 half + 1) rows of slices z - half .. z + half of each stack in a (B * Z) batch.

    Beyond a stack's ends (``first``, ``last``: (B,) from ``_stack_ends``) the end slice repeats
    (the SCM's windows), or with ``mirror`` the slices mirror about the end (d c b a | a b c d, the
    smoothing; still kept inside where the stack is shorter than ``half``).
    """
    first, last = first.reshape(batch, 1, 1), last.reshape(batch, 1, 1)
    offsets = torch.arange(-half, half + 1, device=first.device)
    local = (torch.arange(z, device=first.device).unsqueeze(1) + offsets.unsqueeze(0)).unsqueeze(0)  # (1, Z, N)
    if mirror:
        local = torch.where(local < first, 2 * first - 1 - local, local)
        local = torch.where(local > last, 2 * last + 1 - local, local)
    local = torch.maximum(torch.minimum(local, last), first)
    start = (torch.arange(batch, device=first.device) * z).reshape(batch, 1, 1)
    return (start + local).reshape(batch * z, 2 * half + 1)


def _smooth_yx(prob: torch.Tensor, weights: torch.Tensor, dim: int) -> torch.Tensor:
    """A 1D Gaussian along ``dim`` (-2: Y, -1: X), the ends mirrored (SciPy's ``reflect``)."""
    radius = (weights.shape[0] - 1) // 2
    size = prob.shape[dim]
    padded = torch.cat(
        [prob.narrow(dim, 0, radius).flip(dim), prob, prob.narrow(dim, size - radius, radius).flip(dim)], dim
    )
    out = torch.zeros_like(prob)
    for k in range(weights.shape[0]):
        out = out + weights[k] * padded.narrow(dim, k, size)
    return out


def _stack_ends(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last slice (B,) int64 of each stack in (B, 1, Z, Y, X) that is not entirely 0.

    Consumers that tile in Z pad the stack's ends with zero slices (bioimage.io's halo); the
    windows repeat the last real slice instead, as emseg-monai does at a stack's ends. A stack
    of zeros only keeps all its slices.
    """
    batch, z = x.shape[0], x.shape[2]
    real = x.reshape(batch, z, -1).abs().amax(dim=2) > 0
    position = torch.arange(z, device=x.device).unsqueeze(0).expand(batch, z)
    first = torch.where(real, position, torch.full_like(position, z)).amin(dim=1)
    last = torch.where(real, position, torch.full_like(position, -1)).amax(dim=1)
    empty = first > last
    return torch.where(empty, torch.zeros_like(first), first), torch.where(empty, torch.full_like(last, z - 1), last)


class TwoStageNet(torch.nn.Module):
    """Stage 1 then the SCM over stacks; (B, 1, Z, Y, X) float32 in [0, 1] -> same shape, probabilities
    in steps of 1/255 (as emseg's probability files).

    Slices that are entirely 0 at a stack's ends count as padding: the SCM's windows repeat the
    last other slice there (see ``_stack_ends``).

    Parameters
    ----------
    stage1, scm : torch.nn.Module
        The 2D networks: (B, 1, y, x) -> (B, 1, y, x) logits and (B, N, y, x) -> (B, 1, y, x).
        ``scm`` None: the output is stage 1's.
    window : int
        N, the SCM's slices z - N//2 .. z + N//2.
    stage1_downsample, scm_downsample : int
        Whole XY resolution factors the networks run at (Y and X must be multiples of 16 x them).
    input_kind : str
        ``"prob"`` or ``"mask"`` (the SCM sees stage-1 masks at ``threshold``).
    chunk : int
        Slices per forward pass; 0: all slices of the stack at once (the ONNX graph).
    smoothing : float
        The SCM's probabilities smoothed as ``predict_stack`` does (a 3D Gaussian of this standard
        deviation in slices and network pixels, before they are resized); 0: none. Along Z the
        stack's ends (``_stack_ends``) mirror.
    smoothing_z : float or None
        Its standard deviation along Z alone (``smoothing`` then acts in Y and X); None: ``smoothing``.
    """

    def __init__(
        self,
        stage1: torch.nn.Module,
        scm: torch.nn.Module | None,
        window: int = 15,
        stage1_downsample: float = 1,
        scm_downsample: float = 1,
        input_kind: str = "prob",
        threshold: float = 0.5,
        chunk: int = 8,
        smoothing: float = 0.0,
        smoothing_z: float | None = None,
    ) -> None:
        super().__init__()
        self.stage1 = _Stage(stage1, whole_factor(stage1_downsample, "stage1_downsample"), chunk)
        self.scm = _Stage(
            scm if scm is not None else torch.nn.Identity(), whole_factor(scm_downsample, "scm_downsample"), chunk
        )
        self.use_scm = scm is not None
        self.half = int(window) // 2
        self.as_mask = input_kind == "mask"
        self.threshold = float(threshold)
        along_z = smoothing_sigmas(smoothing, smoothing_z)[0]
        self.smooth = max(float(smoothing), along_z) > 0
        self.register_buffer("z_weights", gaussian_weights(along_z) if along_z > 0 else torch.ones(1))
        self.register_buffer("yx_weights", gaussian_weights(smoothing) if float(smoothing) > 0 else torch.ones(1))

    def _smooth(self, prob: torch.Tensor, batch: int, first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """(B * Z, 1, y, x) SCM probabilities at network resolution, smoothed in Z, Y and X."""
        radius = (self.z_weights.shape[0] - 1) // 2
        index = _neighbours(batch, prob.shape[0] // batch, radius, first, last, mirror=True)
        out = torch.zeros_like(prob)
        for k in range(index.shape[1]):
            out = out + self.z_weights[k] * prob[index[:, k]]
        return _smooth_yx(_smooth_yx(out, self.yx_weights, -2), self.yx_weights, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, z, height, width = x.shape[0], x.shape[2], x.shape[3], x.shape[4]
        slices = x.reshape(batch * z, 1, height, width)  # every slice of every stack
        prob = self.stage1(self.stage1.shrink(slices))
        prob = torch.round(prob * 255.0) / 255.0  # as the stage-1 files store it
        if not self.use_scm:
            return prob.reshape(batch, 1, z, height, width)  # already in 1/255 steps
        if self.as_mask:
            prob = (prob >= self.threshold).to(prob.dtype)
        first, last = _stack_ends(x)
        index = _neighbours(batch, z, self.half, first, last, mirror=False)  # windows of each stack, ends repeated
        if self.smooth:
            low = self.scm(self.scm.shrink(prob)[:, 0], index, grow=False)
            final = self.scm.grow(self._smooth(low, batch, first, last))
        else:
            final = self.scm(self.scm.shrink(prob)[:, 0], index)
        final = torch.round(final * 255.0) / 255.0  # as emseg's output files: its masks come from these steps
        return final.reshape(batch, 1, z, height, width)
