"""Train on several stacks as a user would, and score every output on the unlabeled slices (not a test).

For each stack: ``emseg train``'s pipeline with ``--val-slices none`` (no label outside the labeled
slices is read while training), the voxel size read from the file, then stage 1, the MPP targets,
the final masks (what the run's bundle writes: stage 1 + SCM, or stage 1 alone where the run's MPP
check decided so) and the finished training stack (``finished_mask.tif``) scored on the unlabeled
slices, with the run's decision and the time.

Stacks (``--stacks``, comma-separated):

- ``epfl``: the EPFL training volume as is (5 nm isotropic), labeled 0, 5, ..., 155;
- ``epfl8``: EPFL made anisotropic by keeping every 8th slice (40 nm sections of 5 nm pixels,
  21 slices), labeled every 4th of those (0, 4, ..., 20): a proxy of serial-section TEM;
- ``epfl4``: EPFL kept at every 4th slice (20 nm sections, 42 slices), labeled every 4th of those;
- ``epfl8raw``: the same 40 nm stack written without any voxel size (a plain TIFF, as many
  serial-section stacks travel): the run estimates the Z/XY ratio from the image;
- ``epfl8rough``: a rougher serial-section proxy: sections 30 to 50 nm apart at random (every 6th
  to 10th slice, 40 nm on average, recorded as 40 nm) and each section shifted in Y and X by a
  random residual misalignment (normal, std 6 pixels = 30 nm, at most 24), image and label
  together, cropped to 720 x 976; labeled every 4th section. Seeded (``ROUGH_SEED``): the same
  stack on every run;
- ``epfl8thick``: thick sections as a transmission microscope images them: each 40 nm section is
  the mean of 8 consecutive 5 nm slices (the beam passes through the whole section, so objects
  that slant within it blur at their edges), its label the voxels inside a mitochondrion in at
  least half of those 8 slices; 20 sections (slices 0..159), labeled every 4th (0, 4, ..., 16:
  5 labeled, 15 scored, the shape of issue 14's serial-section stack). The mean is less noisy than
  one slice (no noise is added back);
- ``NAME=IMAGE;LABEL;LABELED[;Z,Y,X]`` (``--stack``, repeatable): any other stack with labels.

    python benchmarks/generalisation.py --data-dir ../shared/data/epfl --output runs/gen --stacks epfl8 \\
        --precision bf16

Options left out take the shipped recipe (bundle/configs). ``--models bundle/`` skips training: the
bundle's weights segment each stack (stage 1 and final), then MPP's check and the finishing run as
in a training run. Writes ``generalisation.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import tifffile

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou
from emseg_monai.io import read_mask, read_stack
from emseg_monai.io.voxels import resolve_voxel_size
from emseg_monai.training.pipeline import train_pipeline
from emseg_monai.training.targets import finish_stack, run_mpp
from emseg_monai.workflows import segment_file

ROUGH_SEED = 8  # the epfl8rough stack's draw of gaps and shifts
ROUGH_SHIFT_STD, ROUGH_SHIFT_MAX = 6.0, 24  # residual misalignment, pixels
STAGE_OPTIONS = ("epochs", "iterations_per_epoch", "precision", "seed")
OUTPUTS = (
    ("stage 1", "stage1_mask.tif"),
    ("MPP targets", "mpp_mask.tif"),
    ("final (bundle)", "final_mask.tif"),
    ("finished stack", "finished_mask.tif"),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with EPFL's training.tif and training_groundtruth.tif")
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--stacks",
        default="epfl,epfl8",
        help="epfl, epfl8, epfl4, epfl8raw, epfl8rough, epfl8thick (comma-separated; '' for none)",
    )
    parser.add_argument("--stack", action="append", default=[], help="NAME=IMAGE;LABEL;LABELED[;Z,Y,X nm]")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--iterations", dest="iterations_per_epoch", type=int)
    parser.add_argument("--precision")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="score runs already complete in --output")
    parser.add_argument("--resume", action="store_true", help="continue interrupted runs in --output")
    parser.add_argument(
        "--models", help="no training: segment with this bundle (e.g. bundle/), then MPP's check and the finishing"
    )
    return parser.parse_args()


def write_calibrated(path: Path, array: np.ndarray, voxel_nm: tuple[float, float, float] | None) -> Path:
    """An ImageJ TIFF recording its voxel size in nm (as microscopes' exports do); None: a plain TIFF."""
    if voxel_nm is None:
        tifffile.imwrite(path, array, photometric="minisblack")
        return path
    z, y, x = voxel_nm
    tifffile.imwrite(
        path, array, imagej=True, resolution=(1 / x, 1 / y), metadata={"axes": "ZYX", "spacing": z, "unit": "nm"}
    )
    return path


def epfl_stacks(data: Path, out: Path, names: list[str]) -> dict[str, tuple]:
    """(image, label, labeled, voxel size) of the EPFL-based stacks asked for, written under ``out``."""
    stacks = {}
    if not names:
        return stacks
    image, truth = read_stack(data / "training.tif"), read_mask(data / "training_groundtruth.tif")
    label = truth.astype(np.uint8) * 255

    def write(name: str, stack: np.ndarray, mask: np.ndarray, voxel, labeled: str = "every:4") -> None:
        folder = out / f"data_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        stacks[name] = (
            write_calibrated(folder / "image.tif", stack, voxel),
            write_calibrated(folder / "label.tif", mask, voxel),
            labeled,
        )

    if "epfl" in names:
        write("epfl", image, label, (5, 5, 5), "0:156:5")
    for name, step, voxel in (("epfl8", 8, (40, 5, 5)), ("epfl8raw", 8, None), ("epfl4", 4, (20, 5, 5))):
        if name in names:
            write(name, image[::step], label[::step], voxel)
    if "epfl8rough" in names:
        write("epfl8rough", *rough_sections(image, label), (40, 5, 5))
    if "epfl8thick" in names:
        write("epfl8thick", *projected_sections(image, truth), (40, 5, 5))
    return stacks


def projected_sections(image: np.ndarray, truth: np.ndarray, depth: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Sections ``depth`` slices thick, imaged through their whole thickness.

    ``image`` (Z, Y, X) uint8 and ``truth`` (Z, Y, X) bool -> (Z // depth, Y, X) uint8 each: the
    mean of each block of ``depth`` slices (rounded), and 255 where at least half of the block's
    slices are foreground (0 elsewhere). Slices past the last whole block are dropped.
    """
    n = image.shape[0] // depth
    blocks = image[: n * depth].reshape(n, depth, *image.shape[1:]).astype(np.float32)
    thick_image = np.rint(blocks.mean(axis=1)).astype(np.uint8)
    votes = truth[: n * depth].reshape(n, depth, *truth.shape[1:]).sum(axis=1, dtype=np.int16)
    thick_label = np.where(2 * votes >= depth, 255, 0).astype(np.uint8)
    return thick_image, thick_label


def rough_sections(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Irregularly spaced, misaligned sections of an isotropic (Z, Y, X) stack and its label.

    Slices 6 to 10 apart at random; each kept slice cropped at a random offset (the same for image
    and label, as a label drawn on the misaligned section would be). Returns (Z', Y - 48, X - 48).
    """
    rng = np.random.default_rng(ROUGH_SEED)
    z, kept = 0, []
    while z < image.shape[0]:
        kept.append(z)
        z += int(rng.integers(6, 11))
    m = ROUGH_SHIFT_MAX
    shifts = np.clip(np.rint(rng.normal(0, ROUGH_SHIFT_STD, (len(kept), 2))), -m, m).astype(int)
    h, w = image.shape[1] - 2 * m, image.shape[2] - 2 * m
    crops = [(m + dy, m + dx) for dy, dx in shifts]
    rough_image = np.stack([image[z, y : y + h, x : x + w] for z, (y, x) in zip(kept, crops)])
    rough_label = np.stack([label[z, y : y + h, x : x + w] for z, (y, x) in zip(kept, crops)])
    return rough_image, rough_label


def run_stack(args: argparse.Namespace, name: str, image: Path, label: Path, labeled: str, voxel, out: Path) -> dict:
    """Train (unless reused) and score one stack; returns its record."""
    run = out / name
    stage1 = {k: getattr(args, k) for k in STAGE_OPTIONS if getattr(args, k) is not None}
    stage1["val_slices"] = "none"
    start = time.perf_counter()
    reused = args.reuse and (run / "finished_mask.tif").is_file()
    if reused:
        pass
    elif args.models:
        with_bundle(Path(args.models), image, label, labeled, voxel, run)
    else:
        train_pipeline(
            image, label, labeled, run, stage1=stage1, scm=dict(stage1), voxel_size=voxel, resume=args.resume
        )
    seconds = time.perf_counter() - start
    earlier = out / "generalisation.json"
    if reused and earlier.is_file():  # keep the time the run took when it was made
        seconds = next((r["train_seconds"] for r in json.loads(earlier.read_text()) if r["stack"] == name), seconds)
    truth = read_mask(label)
    scored = complement(parse_slice_spec(labeled, truth.shape[0]), truth.shape[0])
    scores = {}
    for title, file in OUTPUTS:
        dice, iou = dice_iou(read_mask(run / file), truth, scored)
        scores[title] = {"dice": float(dice), "iou": float(iou)}
    check = json.loads((run / "mpp_check.json").read_text())
    metadata_file = run / "configs" / "metadata.json"
    metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    return {
        "stack": name,
        "shape": list(truth.shape),
        "labeled": labeled,
        "scored_slices": int(scored.size),
        "voxels": metadata.get("emseg_training", {}).get("voxels", resolve_voxel_size(image, voxel).as_record()),
        "models": args.models or "trained here",
        "decision": check["reason"],
        "use_scm": check["use_scm"],
        "train_seconds": round(seconds, 1),
        "scores": scores,
    }


def with_bundle(models: Path, image: Path, label: Path, labeled: str, voxel, run: Path) -> None:
    """The outputs of a run, made with an existing bundle's weights instead of training them."""
    run.mkdir(parents=True, exist_ok=True)
    segment_file(image, run / "final_mask.tif", models, save_stage1=True, overwrite=True)
    (run / "final_mask_stage1_mask.tif").replace(run / "stage1_mask.tif")
    anisotropy = resolve_voxel_size(image, voxel).anisotropy
    mpp_file = run / "mpp_mask.tif"
    run_mpp(
        run / "stage1_mask.tif",
        label,
        labeled,
        mpp_file,
        True,
        report_file=run / "mpp_check.json",
        anisotropy=anisotropy,
    )
    settings = json.loads((run / "mpp_check.json").read_text())["settings"]
    finish_stack(run / "final_mask.tif", label, labeled, run / "finished_mask.tif", settings)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    names = [s for s in args.stacks.split(",") if s]
    if names and not args.data_dir:
        raise SystemExit(
            "--data-dir (EPFL) is needed for --stacks epfl, epfl8, epfl4, epfl8raw, epfl8rough, epfl8thick"
        )
    stacks = {k: (*v, None) for k, v in epfl_stacks(Path(args.data_dir or "."), out, names).items()}
    for spec in args.stack:
        name, _, rest = spec.partition("=")
        parts = rest.split(";")
        if len(parts) not in (3, 4):
            raise SystemExit(f"--stack must be NAME=IMAGE;LABEL;LABELED[;Z,Y,X], got {spec!r}")
        stacks[name] = (Path(parts[0]), Path(parts[1]), parts[2], parts[3] if len(parts) == 4 else None)
    records = [run_stack(args, name, *stack, out) for name, stack in stacks.items()]
    (out / "generalisation.json").write_text(json.dumps(records, indent=1))
    print()
    print("| stack | " + " | ".join(f"{t} Dice (%)" for t, _ in OUTPUTS) + " | SCM used | minutes |")
    print("|---|" + "---:|" * (len(OUTPUTS) + 2))
    for r in records:
        dice = " | ".join(f"{100 * r['scores'][t]['dice']:.2f}" for t, _ in OUTPUTS)
        used = "yes" if r["use_scm"] else "no"
        print(f"| {r['stack']} ({r['scored_slices']} scored) | {dice} | {used} | {r['train_seconds'] / 60:.1f} |")
    for r in records:
        print(f"{r['stack']}: {r['decision']}")


if __name__ == "__main__":
    main()
