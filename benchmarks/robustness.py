"""How a bundle's weights hold up when a stack looks different from their training data (not a test).

Each condition changes the image the way another microscope or preparation might: a gamma curve,
noise, blur, or other pixel sizes (the stack resampled in XY, the truth with it). The changed stack
is segmented with the bundle (stage 1 alone, then as `emseg segment` does) and scored on the unlabeled
slices. Each changed stack records its voxel size (``--voxel-size`` of the original, scaled for the
pixel and section conditions), so the bundle matches it to the trained one (``inference.voxel_match``).
Prints a table; writes ``robustness.json`` to ``--output``.

    python benchmarks/robustness.py --image ../shared/data/epfl/training.tif \\
        --truth ../shared/data/epfl/training_groundtruth.tif --output runs/robustness

Conditions (``--conditions``, comma-separated; default all): ``none``, ``gamma0.5``, ``gamma2``
(intensity ** gamma on the 0..1 scale), ``noise0.08`` (Gaussian, std 0.08 of the range),
``blur1.5`` (Gaussian, sigma 1.5 pixels), ``blur1.5+noise0.08``, ``pixels1.6`` / ``pixels1.25`` /
``pixels0.8`` (pixels that many times as large as the original's: 8, 6.25 and 4 nm for EPFL's 5 nm),
``sections2`` / ``sections3`` / ``sections4`` / ``sections8`` (every 2nd, 3rd, 4th, 8th slice kept:
sections that many times as thick, as in serial-section data; the kept slices that are not labeled
are scored).
Conditions that change the voxel size also run with ``match_voxel_size`` off.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou
from emseg_monai.io import read_mask, read_stack, write_stack
from emseg_monai.io.voxels import parse_voxel_size
from emseg_monai.workflows import segment_file

Change = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _gamma(g: float) -> Change:
    return lambda a, rng: a**g


def _noise(std: float) -> Change:
    return lambda a, rng: a + rng.normal(0.0, std, a.shape).astype(np.float32)


def _blur(sigma: float) -> Change:
    return lambda a, rng: ndimage.gaussian_filter(a, (0, sigma, sigma))


def _pixels(factor: float) -> Change:
    return lambda a, rng: ndimage.zoom(a, (1, 1 / factor, 1 / factor), order=1)


CONDITIONS: dict[str, Change] = {
    "none": lambda a, rng: a,
    "gamma0.5": _gamma(0.5),
    "gamma2": _gamma(2.0),
    "noise0.08": _noise(0.08),
    "blur1.5": _blur(1.5),
    "blur1.5+noise0.08": lambda a, rng: _noise(0.08)(_blur(1.5)(a, rng), rng),
    "pixels1.6": _pixels(1.6),
    "pixels1.25": _pixels(1.25),
    "pixels0.8": _pixels(0.8),
    "sections2": lambda a, rng: a,  # every 2nd slice kept (main() subsamples Z)
    "sections3": lambda a, rng: a,
    "sections4": lambda a, rng: a,
    "sections8": lambda a, rng: a,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="(Z, Y, X) stack")
    parser.add_argument("--truth", required=True, help="its labels (0/255 or 0/1), same shape")
    parser.add_argument("--labeled", default="0:156:5", help="slices the weights trained on (not scored)")
    parser.add_argument("--bundle", default="bundle", help="bundle folder whose weights segment")
    parser.add_argument("--output", required=True)
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated, from the list above")
    parser.add_argument("--voxel-size", default="5,5,5", help="Z,Y,X nm of --image (EPFL: 5,5,5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--smoothing", type=float, default=None, help="the SCM's smoothing (default: the bundle's)")
    return parser.parse_args()


def changed_truth(truth: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The (Z, Y, X) bool truth resampled (nearest) to a changed stack's shape."""
    if truth.shape == shape:
        return truth
    factors = (1, shape[1] / truth.shape[1], shape[2] / truth.shape[2])
    return ndimage.zoom(truth.astype(np.uint8), factors, order=0) > 0


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    names = [c for c in args.conditions.split(",") if c]
    unknown = [c for c in names if c not in CONDITIONS]
    if unknown:
        raise SystemExit(f"unknown condition {unknown[0]!r}; known: {', '.join(CONDITIONS)}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    image = read_stack(args.image)
    if np.issubdtype(image.dtype, np.integer):  # the dtype's full range is 0..1
        image = image.astype(np.float32) / np.iinfo(image.dtype).max
    else:
        image = image.astype(np.float32)
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    truth = read_mask(args.truth)
    scored = complement(parse_slice_spec(args.labeled, truth.shape[0]), truth.shape[0])
    z_nm, y_nm, x_nm = parse_voxel_size(args.voxel_size)
    rng = np.random.default_rng(args.seed)
    rows = []
    for name in names:
        step = int(name[len("sections") :]) if name.startswith("sections") else 1
        kept = np.arange(0, image.shape[0], step)  # the sections conditions keep every step-th slice
        changed = np.clip(CONDITIONS[name](image[kept] if step > 1 else image, rng), 0.0, 1.0)
        factor = changed.shape[2] / image.shape[2]  # the pixel conditions' new sampling
        voxel = (z_nm * step, y_nm / factor, x_nm / factor)
        source = write_stack(out / "changed.tif", (changed * 255).round().astype(np.uint8), voxel_size=voxel)
        target = changed_truth(truth[kept], changed.shape)
        rows_scored = np.flatnonzero(np.isin(kept, scored))
        for match in (True, False) if step > 1 or factor != 1 else (True,):
            row = {"condition": name if match else f"{name}, no voxel match", "shape": list(changed.shape)}
            row["scored_slices"] = int(rows_scored.size)
            for title, use_scm in (("stage 1", False), ("final", True)):
                start = time.perf_counter()
                segment_file(
                    source,
                    out / "pred.tif",
                    args.bundle,
                    use_scm=use_scm,
                    overwrite=True,
                    match_voxel_size=match,
                    smoothing=args.smoothing,
                )
                dice, iou = dice_iou(read_mask(out / "pred.tif"), target, rows_scored)
                row[title] = {"dice": float(dice), "iou": float(iou), "seconds": time.perf_counter() - start}
            rows.append(row)
            first, final = 100 * row["stage 1"]["dice"], 100 * row["final"]["dice"]
            print(f"{row['condition']}: stage 1 {first:.2f}, final {final:.2f}", flush=True)
            (out / "robustness.json").write_text(json.dumps(rows, indent=1))
    (out / "changed.tif").unlink(missing_ok=True)
    (out / "pred.tif").unlink(missing_ok=True)
    smoothing = "the bundle's" if args.smoothing is None else f"{args.smoothing:g}"
    print(
        f"\nbundle {args.bundle}, smoothing {smoothing}; "
        "final: what emseg segment writes (stage 1 + SCM where the SCM suits)\n"
    )
    print("| condition | shape | slices scored | stage 1 Dice (%) | final Dice (%) |\n|---|---|---:|---:|---:|")
    for r in rows:
        shape = " x ".join(map(str, r["shape"]))
        first, final = 100 * r["stage 1"]["dice"], 100 * r["final"]["dice"]
        print(f"| {r['condition']} | {shape} | {r['scored_slices']} | {first:.2f} | {final:.2f} |")


if __name__ == "__main__":
    main()
