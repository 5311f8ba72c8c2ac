"""Synthetic EM-like stacks with ground truth: the embedded default data of the demo and tests.

What makes Z continuity matter, as in real EM: mitochondria are tubes that continue over many
slices, while *decoys* (organelles that look like mitochondria in one section) exist in a single
slice, and some slices are degraded (heavy noise, blur). A per-slice network mistakes decoys and
misses objects in bad slices; a model that sees neighbouring slices can fix both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from emseg_monai.errors import InputError


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the generator (sizes in pixels, intensities in [0, 1])."""

    mito_density: float = 5e-5  # mitochondria per voxel
    mito_radius: tuple[float, float] = (4.0, 9.0)  # in-plane semi-axes range
    mito_length: tuple[float, float] = (4.0, 14.0)  # semi-axis along Z, in slices
    decoys_per_slice: float = 2.5  # single-slice look-alikes per 128 x 128 area
    cell_spacing: float = 40.0  # mean distance between membrane-bounded cells
    noise: float = 0.07  # per-voxel Gaussian noise std
    bad_slice_fraction: float = 0.15  # slices with heavy noise and blur
    bad_slice_noise: float = 0.3


def make_synthetic_stack(
    shape: tuple[int, int, int] = (40, 128, 128), seed: int = 0, config: SyntheticConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Generate an EM-like (Z, Y, X) stack and its mitochondria mask.

    Parameters
    ----------
    shape : (Z, Y, X)
        Stack size; each at least 8.
    seed : int
        The same seed gives the same stack.
    config : SyntheticConfig or None
        Generator settings.

    Returns
    -------
    image : numpy.ndarray
        (Z, Y, X) uint8 stack: textured background, dark membranes, dark textured mitochondria.
    label : numpy.ndarray
        (Z, Y, X) uint8 mask, 255 = mitochondrion, 0 = background.

    Examples
    --------
    >>> image, label = make_synthetic_stack((8, 32, 32), seed=1)
    >>> image.shape, image.dtype, sorted(set(label.ravel().tolist())) <= [0, 255]
    ((8, 32, 32), dtype('uint8'), True)
    """
    if len(shape) != 3 or min(shape) < 8:
        raise InputError(f"synthetic stack shape must be 3 sizes, each >= 8, got {shape}")
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(seed)
    zz, yy, xx = (a.astype(np.float32) for a in np.meshgrid(*map(np.arange, shape), indexing="ij", sparse=True))

    image = 0.68 + 0.06 * _smooth_noise(shape, rng, sigma=(1.0, 3.0, 3.0))
    image -= 0.3 * _membranes(shape, rng, cfg.cell_spacing)

    label = np.zeros(shape, dtype=bool)
    n_mito = max(1, rng.poisson(cfg.mito_density * np.prod(shape)))
    for _ in range(n_mito):
        r = _ellipsoid_radius(shape, rng, cfg, zz, yy, xx)
        inside = r < 1.0
        label |= inside
        _paint_organelle(image, r, rng, cristae=True)

    n_decoys = rng.poisson(cfg.decoys_per_slice * shape[0] * shape[1] * shape[2] / 128.0**2)
    for _ in range(n_decoys):
        z = int(rng.integers(shape[0]))
        r2d = _ellipse_radius(shape[1:], rng, cfg, yy[0], xx[0])
        _paint_organelle(image[z : z + 1], r2d[None], rng, cristae=True)

    image += cfg.noise * rng.standard_normal(shape).astype(np.float32)
    image += 0.03 * rng.standard_normal((shape[0], 1, 1)).astype(np.float32)  # section brightness flicker
    bad = rng.random(shape[0]) < cfg.bad_slice_fraction
    for z in np.flatnonzero(bad):
        image[z] = ndimage.gaussian_filter(image[z], 1.5)
        image[z] += cfg.bad_slice_noise * rng.standard_normal(shape[1:]).astype(np.float32)
    image = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return image, label.astype(np.uint8) * np.uint8(255)


def _smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, sigma: tuple[float, ...]) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-6)


def _membranes(shape: tuple[int, int, int], rng: np.random.Generator, spacing: float) -> np.ndarray:
    """Dark cell boundaries: where the two nearest Voronoi seeds are about equally close."""
    z_scale = 0.5  # cells are elongated along Z
    n_seeds = max(4, int(np.prod(shape) * z_scale / spacing**3 * 3))
    seeds = rng.random((n_seeds, 3)) * np.asarray(shape) * np.asarray([z_scale, 1, 1])
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    grid[:, 0] *= z_scale
    dist, _ = cKDTree(seeds).query(grid, k=2)
    gap = (dist[:, 1] - dist[:, 0]).reshape(shape)
    return np.clip(1.0 - gap / 1.8, 0.0, 1.0).astype(np.float32)


def _ellipsoid_radius(shape, rng, cfg, zz, yy, xx) -> np.ndarray:
    """Normalised radius of a random tilted ellipsoid (< 1 inside), on its bounding box only."""
    cz, cy, cx = rng.random(3) * np.asarray(shape)
    a, b = rng.uniform(*cfg.mito_radius, size=2)
    c = rng.uniform(*cfg.mito_length)
    theta = rng.uniform(0, np.pi)
    tilt_y, tilt_x = rng.normal(0, 0.6, size=2)  # in-plane drift per slice
    dz = zz - cz
    dy = yy - (cy + tilt_y * dz)
    dx = xx - (cx + tilt_x * dz)
    u = dy * np.cos(theta) + dx * np.sin(theta)
    v = -dy * np.sin(theta) + dx * np.cos(theta)
    return np.sqrt((u / a) ** 2 + (v / b) ** 2 + (dz / c) ** 2).astype(np.float32)


def _ellipse_radius(shape2d, rng, cfg, yy, xx) -> np.ndarray:
    cy, cx = rng.random(2) * np.asarray(shape2d)
    a, b = rng.uniform(*cfg.mito_radius, size=2)
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dy * np.cos(theta) + dx * np.sin(theta)
    v = -dy * np.sin(theta) + dx * np.cos(theta)
    return np.sqrt((u / a) ** 2 + (v / b) ** 2).astype(np.float32)


def _paint_organelle(image: np.ndarray, r: np.ndarray, rng: np.random.Generator, cristae: bool) -> None:
    """Darken ``image`` in place where ``r`` < 1: dark rim, mid-dark textured interior."""
    inside = r < 1.0
    if not inside.any():
        return
    level = rng.uniform(0.32, 0.42)
    fill = np.full(r.shape, level, dtype=np.float32)
    if cristae:
        freq, phase = rng.uniform(0.6, 1.0), rng.uniform(0, 2 * np.pi)
        idx = np.indices(r.shape[-2:]).astype(np.float32)
        fill += 0.07 * np.sin(freq * (idx[0] + idx[1]) + phase)
    fill[r > 0.8] = level - 0.15
    image[inside] = fill[inside]
