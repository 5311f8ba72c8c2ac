"""Smoothing a run's final probabilities across slices: does a 3D filter after the SCM pay?

For issue 13's cheap levers (like test-time flips): PyTorch Connectomics, for one, applies a 3D
median to its predictions. Each run (a bundle folder) segments the stack once (stage 1, then its
SCM); the table scores, on the given slices, the SCM's own probabilities (as ``emseg segment
--smoothing 0`` thresholds them; since emseg-monai 0.8.6 ``emseg segment`` smooths them by default,
at the network's resolution) and after each full-resolution filter, with its time on this machine:

- ``gauss z S``: a Gaussian of standard deviation S slices along Z only;
- ``gauss Z,Y,X``: a 3D Gaussian (standard deviations in voxels);
- ``median N``: an N x N x N median of the uint8 probabilities.

Examples (the shipped weights on the 133 unlabeled EPFL slices; a Z-split run of
``benchmarks/epfl_recipe.py`` on the slices it never saw, the whole stack segmented as there)::

    python benchmarks/postfilter.py bundle --image ../shared/data/epfl/training.tif \\
        --truth ../shared/data/epfl/training_groundtruth.tif --score rest-of:0:156:5
    python benchmarks/postfilter.py runs/zsplit_bf16_e30_s0/run --image ../shared/data/epfl/training.tif \\
        --truth ../shared/data/epfl/training_groundtruth.tif --score 110:165

``--score`` takes a slice spec or ``rest-of:SPEC``, as in ``benchmarks/ensemble.py``. Prints a table
per run; not a test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from ensemble import read_scored, runs_parser  # benchmarks/ensemble.py: this script's folder is on sys.path
from scipy import ndimage as ndi

from emseg_monai.evaluation import dice_iou, markdown_table
from emseg_monai.inference.inferer import StackInferer
from emseg_monai.inference.stages import to_mask
from emseg_monai.workflows import load_bundle_networks


def filters() -> Iterator[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """(name, function of uint8 (Z, Y, X) probabilities -> probabilities 0..255, any dtype)."""
    for sigma in (0.5, 1.0, 1.5, 2.0):
        yield f"gauss z {sigma:g}", lambda p, s=sigma: ndi.gaussian_filter1d(p.astype(np.float32), s, axis=0)
    for sigmas in ((1, 1, 1), (0, 1, 1), (1, 2, 2)):
        name = "gauss " + ",".join(str(s) for s in sigmas)
        yield name, lambda p, s=sigmas: ndi.gaussian_filter(p.astype(np.float32), s)
    for size in (3, 5):
        yield f"median {size}", lambda p, n=size: ndi.median_filter(p, n)


def main() -> None:
    args = runs_parser(__doc__.splitlines()[0]).parse_args()
    image, truth, scored = read_scored(args)
    for run in args.runs:
        # smoothing 0: the SCM's own output, so that the filters below are compared with nothing
        stage1_net, scm_net, settings, _ = load_bundle_networks(Path(run), backend="onnx", smoothing=0)
        start = time.perf_counter()
        final, prob1 = StackInferer(settings, scm_net, progress=False).segment_array(image, stage1_net)
        seconds = time.perf_counter() - start
        threshold = settings.threshold * 255
        mask1, mask = to_mask(prob1, settings.threshold), to_mask(final, settings.threshold)
        rows = [
            ("stage 1", *dice_iou(mask1, truth, scored)),
            (f"final, unsmoothed (`emseg segment --smoothing 0`, {seconds:.1f} s)", *dice_iou(mask, truth, scored)),
        ]
        for name, smooth in filters():
            start = time.perf_counter()
            smoothed = smooth(final)
            cost = time.perf_counter() - start
            rows.append((f"final, {name} (+{cost:.1f} s)", *dice_iou(smoothed >= threshold, truth, scored)))
        print(f"\n{run}: {image.shape} stack, {len(scored)} slices scored ({args.score})\n")
        print(markdown_table(rows, header=("output (time on this machine)", "Dice (%)", "IoU (%)")))


if __name__ == "__main__":
    main()
