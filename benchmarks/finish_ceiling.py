"""How far can the finished training stack go with what it knows? (EPFL, not a test.)

The finished stack (``finished_mask.tif`` of ``emseg train``) combines the network's masks with the
labeled slices. This script measures, on the unlabeled slices between two labeled ones, how much
those ingredients can give at best:

- the nearest labeled slice's ground truth copied as is, by distance to it (what the labels alone
  say about a slice);
- shape interpolation: the signed distance maps of the two bracketing labeled slices, weighted by
  distance (optionally after registering each to the slice with optical flow on the EM image);
- MPP of the final masks (what ``finished_mask.tif`` is today);
- an **upper bound**, not a method: a logistic regression per voxel over the SCM's logit and the
  labels' signed distances, one per distance to the nearest labeled slice, fitted on the
  *validation labels themselves* (40,000 voxels per slice). No rule built from these per-voxel
  inputs, chosen without those labels, can be expected to beat it by much.

    python benchmarks/finish_ceiling.py --data-dir ../shared/data/epfl --output runs/finish_ceiling [--flow]

Segments the stack with ``--models`` (default: the shipped bundle) once, cached in the output folder.
Prints a table and writes ``finish_ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage

from emseg_monai.data.slices import parse_slice_spec
from emseg_monai.inference.stages import segment
from emseg_monai.transforms.mpp import mpp
from emseg_monai.workflows import load_bundle_networks

SAMPLES_PER_SLICE = 40_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder with training.tif and training_groundtruth.tif")
    parser.add_argument("--output", required=True)
    parser.add_argument("--models", help="bundle folder (default: the shipped bundle)")
    parser.add_argument("--labeled", default="0:156:5")
    parser.add_argument("--flow", action="store_true", help="also register the labeled slices (optical flow, slow)")
    return parser.parse_args()


def final_probabilities(args: argparse.Namespace, image: np.ndarray, out: Path) -> np.ndarray:
    """SCM (final) probabilities, uint8 0..255 (Z, Y, X), cached as final_prob.npy."""
    cache = out / "final_prob.npy"
    if not cache.exists():
        stage1, scm, settings, _ = load_bundle_networks(args.models, backend="auto")
        np.save(cache, segment(image, stage1, scm, settings, progress=False)["final_prob"])
    return np.load(cache)


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed distance (px, positive inside) of a 2D bool mask, float32."""
    return (ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)).astype(np.float32)


def registered(image: np.ndarray, truth: np.ndarray, z: int, source: int) -> np.ndarray:
    """Ground truth of slice ``source`` moved onto slice ``z`` by optical flow (at half resolution)."""
    from skimage.registration import optical_flow_ilk
    from skimage.transform import rescale, resize, warp

    small = [rescale(image[k].astype(np.float32) / 255, 0.5, anti_aliasing=True) for k in (z, source)]
    flow_y, flow_x = optical_flow_ilk(small[0], small[1], radius=7)
    shape = truth.shape[1:]
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    coords = np.array([rows + 2 * resize(flow_y, shape, order=1), cols + 2 * resize(flow_x, shape, order=1)])
    return warp(truth[source].astype(np.float32), coords, mode="edge", order=1) > 0.5


def logit(prob: np.ndarray) -> np.ndarray:
    p = np.clip(prob.astype(np.float32) / 255, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def fit_logistic(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Weights (n_features + 1, bias last) of a logistic regression fitted with L-BFGS."""
    x = torch.tensor(features, dtype=torch.float64)
    y = torch.tensor(target, dtype=torch.float64)
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w[:-1] + w[-1], y)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


class Pool:
    """Dice pooled over voxels, per named output and distance class."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], list[int]] = {}

    def add(self, name: str, distance: int, pred: np.ndarray, truth: np.ndarray) -> None:
        c = self.counts.setdefault((name, distance), [0, 0])
        c[0] += int(np.count_nonzero(pred & truth))
        c[1] += int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))

    def dice(self, name: str, distance: int | None = None) -> float:
        keys = [k for k in self.counts if k[0] == name and (distance is None or k[1] == distance)]
        inter, total = (sum(self.counts[k][i] for k in keys) for i in (0, 1))
        return round(200 * inter / max(total, 1), 2)


def main() -> None:
    args = parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data_dir)
    image = tifffile.imread(data / "training.tif")
    truth = tifffile.imread(data / "training_groundtruth.tif") > 0
    labeled = np.asarray(parse_slice_spec(args.labeled, truth.shape[0]))
    start = time.perf_counter()
    prob = final_probabilities(args, image, out)
    finished = mpp(prob >= 128, truth, labeled)
    inner = np.setdiff1d(np.arange(labeled[0] + 1, labeled[-1]), labeled).tolist()
    distance_maps = {int(k): signed_distance(truth[k]) for k in labeled}
    pool, samples, features_of = Pool(), {}, {}
    rng = np.random.default_rng(0)
    for z in inner:
        below, above = labeled[labeled < z].max(), labeled[labeled > z].min()
        d_below, d_above = z - below, above - z
        d = int(min(d_below, d_above))
        near = below if d_below <= d_above else above
        s_below, s_above = distance_maps[int(below)], distance_maps[int(above)]
        if args.flow:
            s_below = signed_distance(registered(image, truth, z, int(below)))
            s_above = signed_distance(registered(image, truth, z, int(above)))
        interp = (d_above * s_below + d_below * s_above) / (d_below + d_above)
        s_near, s_far = (s_below, s_above) if near == below else (s_above, s_below)
        pool.add("nearest labeled slice copied", d, truth[near], truth[z])
        pool.add("shape interpolation", d, interp > 0, truth[z])
        pool.add("final masks (emseg segment)", d, prob[z] >= 128, truth[z])
        pool.add("MPP of the final masks (finished stack)", d, finished[z], truth[z])
        f = np.stack(
            [
                logit(prob[z]),
                np.tanh(interp / 2),
                np.tanh(interp / 6),
                np.tanh(s_near / 3),
                np.tanh(s_far / 3),
                np.tanh(s_near / 10),
            ],
            axis=-1,
        ).reshape(-1, 6)
        pick = rng.choice(len(f), SAMPLES_PER_SLICE, replace=False)
        samples.setdefault(d, []).append((f[pick], truth[z].ravel()[pick]))
        features_of[z] = (f, d)
    weights = {
        d: fit_logistic(np.concatenate([a for a, _ in s]), np.concatenate([b for _, b in s]))
        for d, s in samples.items()
    }
    for z, (f, d) in features_of.items():
        pred = (f @ weights[d][:-1] + weights[d][-1]) > 0
        pool.add("upper bound: fusion fitted on the validation labels", d, pred, truth[z].ravel())
    distances = sorted(samples)
    names = sorted({k[0] for k in pool.counts}, key=lambda n: pool.dice(n))
    result = {
        "slices": len(inner),
        "flow": args.flow,
        "seconds": round(time.perf_counter() - start, 1),
        "dice": {n: {"all": pool.dice(n), **{f"distance {d}": pool.dice(n, d) for d in distances}} for n in names},
        "fusion_weights": {str(d): np.round(w, 3).tolist() for d, w in weights.items()},
    }
    (out / "finish_ceiling.json").write_text(json.dumps(result, indent=1))
    print(f"{len(inner)} unlabeled slices between labeled ones; Dice (%) pooled, by distance to the nearest label")
    print(f"| output | all | {' | '.join(f'distance {d}' for d in distances)} |")
    for n in names:
        print(f"| {n} | {pool.dice(n)} | {' | '.join(str(pool.dice(n, d)) for d in distances)} |")
    print(f"{result['seconds']} s")


if __name__ == "__main__":
    main()
