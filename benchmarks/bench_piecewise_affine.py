"""Benchmark: scikit-image piecewise affine warp vs ``piecewise_affine_warp``.

One 1 x 768 x 1024 float32 slice, 4 x 4 control grid, 2 CPU threads. Prints the median time per
slice of each, the speed-up, and the difference to scikit-image over interior pixels.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_piecewise_affine.py``
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from skimage.transform import PiecewiseAffineTransform, warp

from emseg_monai.transforms.piecewise_affine import control_grid, piecewise_affine_warp

HEIGHT, WIDTH, GRID, SCALE, MARGIN = 768, 1024, (4, 4), 0.05, 8


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    image = 0.5 + 0.25 * np.sin(xx / 23.0) * np.cos(yy / 17.0) + 0.2 * rng.random((HEIGHT, WIDTH))
    image = image.astype(np.float32)[None]
    src = control_grid((HEIGHT, WIDTH), GRID)
    dst = src + rng.normal(size=src.shape) * SCALE * np.array([WIDTH, HEIGHT])

    def skimage_warp():
        tform = PiecewiseAffineTransform.from_estimate(dst, src)
        return warp(image[0], tform, order=1, preserve_range=True)

    def ours():
        return piecewise_affine_warp(image, src, dst, mode="bilinear")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_sk = _median_time(skimage_warp, repeats=7)
        ref = skimage_warp()
    t_ours = _median_time(ours, repeats=31)
    diff = np.abs(ours()[0].astype(np.float64) - ref)[MARGIN:-MARGIN, MARGIN:-MARGIN]
    t_tensor = _median_time(lambda: piecewise_affine_warp(torch.from_numpy(image), src, dst), repeats=31)

    print(
        f"image 1 x {HEIGHT} x {WIDTH} float32, grid {GRID[0]} x {GRID[1]}, scale {SCALE}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"skimage estimate+warp : {t_sk * 1e3:8.2f} ms/slice (median of 7)")
    print(f"ours (numpy in/out)   : {t_ours * 1e3:8.2f} ms/slice (median of 31)")
    print(f"ours (torch in/out)   : {t_tensor * 1e3:8.2f} ms/slice (median of 31)")
    print(f"speed-up              : {t_sk / t_ours:8.1f}x")
    print(f"abs diff vs skimage (interior, margin {MARGIN}px): max {diff.max():.3g}, mean {diff.mean():.3g}")


if __name__ == "__main__":
    main()
