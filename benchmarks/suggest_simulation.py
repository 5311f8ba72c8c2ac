"""Simulated labeling rounds: do ``emseg suggest``'s slices beat evenly spaced ones? (prints a table)

Labels are revealed only when an arm asks for them. Both arms start from the same run, trained on
``--start`` evenly spaced labeled slices. Each round, an arm asks for ``--add`` more slices, gets
their labels, and fine-tunes its previous run (``emseg train --resume`` with the new ``--labeled``):

- ``suggest``: the slices ``emseg suggest`` picks (distance to labels, stage-1 uncertainty, SCM/MPP
  disagreement);
- ``even``: the same picking rule with no signal, which splits the widest gaps (evenly spaced
  labels, added a few at a time as a user would).

Every round of both arms, and a reference trained once on ``--reference`` evenly spaced slices
for as many epochs as an arm trained in all (two seeds: the seed noise), is scored on the slices
that no arm and no reference ever labeled: final masks (stage 1 + SCM, what ``emseg segment``
writes) against the ground truth.

    python benchmarks/suggest_simulation.py --data-dir ../shared/data/epfl --output runs/suggest \\
        --plot docs/figures/suggest_simulation.png

(about 35 min on 2 CPU cores with the defaults: bf16, 10 epochs of 20 iterations for a new run,
2 for each fine-tuning round). ``--synthetic`` runs on a generated stack instead
(the tests run a two-round version of it).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from emseg_monai.data.slices import evenly_spaced
from emseg_monai.evaluation import dice_iou
from emseg_monai.io import read_mask, write_stack
from emseg_monai.io.stacks import atomic_write
from emseg_monai.training.finetune import prepare_finetune
from emseg_monai.training.pipeline import train_pipeline
from emseg_monai.training.suggest import rank_slices, run_signals

ARMS = ("suggest", "even")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with training.tif and training_groundtruth.tif")
    parser.add_argument("--synthetic", action="store_true", help="a generated stack instead of --data-dir")
    parser.add_argument("--output", required=True)
    parser.add_argument("--start", type=int, default=4, help="evenly spaced labeled slices to start from")
    parser.add_argument("--add", type=int, default=4, help="slices each arm asks for per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference", type=int, default=32, help="evenly spaced slices of the reference run")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the first run")
    parser.add_argument(
        "--reference-epochs",
        type=int,
        help="epochs of the reference runs (default: an arm's total, epochs + rounds x fine-tuning)",
    )
    parser.add_argument("--finetune-epochs", type=int, default=2, help="epochs of each round's fine-tuning")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--tiny", action="store_true", help="tiny networks and crops (the tests)")
    parser.add_argument("--plot", help="write Dice against labeled slices to this PNG")
    return parser.parse_args(argv)


def recipe(args: argparse.Namespace, epochs: int, seed: int = 0) -> dict:
    """train_pipeline keyword arguments of one training."""
    stage = {"epochs": epochs, "iterations_per_epoch": args.iterations, "val_slices": "none", "seed": seed}
    stage["precision"] = args.precision
    shared: dict = {}
    mpp: dict = {}
    if args.tiny:
        stage.update(batch_size=2, crop_size=32)
        shared.update(features=[4, 4, 8, 8, 16, 4], downsample=1, scm_window=3)
        mpp.update(min_size=4, spread_min_size=4, erosions_per_step=1)
    return {"stage1": stage, "scm": dict(stage), "shared": shared, "mpp": mpp, "device": "cpu" if args.tiny else None}


def spec(slices) -> str:
    return ",".join(str(int(z)) for z in sorted(slices))


def data_files(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    if args.synthetic:
        from emseg_monai.data import make_synthetic_stack

        image, label = make_synthetic_stack((24, 48, 48) if args.tiny else (48, 160, 160), seed=3)
        files = out / "synthetic_image.tif", out / "synthetic_label.tif"
        write_stack(files[0], image)
        write_stack(files[1], label)
        return files
    if not args.data_dir:
        raise SystemExit("give --data-dir or --synthetic")
    data = Path(args.data_dir)
    return data / "training.tif", data / "training_groundtruth.tif"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    image, label = data_files(args, out)
    truth = read_mask(label)
    n = truth.shape[0]
    start = [int(z) for z in evenly_spaced(args.start, n)]
    times: dict[str, float] = {}

    def train(run: Path, labeled: list[int], epochs: int, seed: int = 0, init_from=None) -> None:
        t0 = time.perf_counter()
        kwargs = recipe(args, epochs, seed)
        bundle = run if init_from is not None else None  # fine-tuning keeps the run's own recipe
        train_pipeline(
            image, label, spec(labeled), run, resume=init_from is not None, init_from=init_from, bundle=bundle, **kwargs
        )
        times[str(run.relative_to(out))] = round(time.perf_counter() - t0, 1)

    first = out / "start"
    if not (first / "final_mask.tif").is_file():
        train(first, start, args.epochs)
    labeled = {arm: [list(start)] for arm in ARMS}  # per arm: the labeled slices of each round
    runs = {arm: [first] for arm in ARMS}
    for arm in ARMS:
        for r in range(1, args.rounds + 1):
            previous, current = runs[arm][-1], out / arm / f"round{r}"
            signals = run_signals(previous)
            if arm == "suggest":
                picks, _ = rank_slices(
                    signals["labeled"], n, args.add, signals["uncertainty"], signals.get("disagreement")
                )
            else:
                picks, _ = rank_slices(signals["labeled"], n, args.add)
            now = sorted(set(labeled[arm][-1]) | {p.slice for p in picks})
            logging.info("%s round %d asks for slices %s", arm, r, [p.slice for p in picks])
            if not (current / "final_mask.tif").is_file():
                shutil.rmtree(current, ignore_errors=True)
                shutil.copytree(previous, current)
                init = prepare_finetune(current, spec(now), n)
                train(current, now, args.finetune_epochs, init_from=init)
            labeled[arm].append(now)
            runs[arm].append(current)
    reference = [int(z) for z in evenly_spaced(args.reference, n)]
    references = []
    reference_epochs = args.reference_epochs or args.epochs + args.rounds * args.finetune_epochs
    for seed in (0, 1):
        run = out / f"reference{reference_epochs}_seed{seed}"
        if not (run / "final_mask.tif").is_file():
            train(run, reference, reference_epochs, seed=seed)
        references.append(run)
    used = set(reference) | {z for arm in ARMS for s in labeled[arm] for z in s}
    scored = np.array(sorted(set(range(n)) - used))
    record: dict = {"scored_slices": len(scored), "seconds": times, "arms": {}, "reference": {}}
    for arm in ARMS:
        record["arms"][arm] = [
            {"labeled": len(s), "slices": s, "dice": dice_iou(read_mask(run / "final_mask.tif"), truth, scored)[0]}
            for s, run in zip(labeled[arm], runs[arm])
        ]
    for seed, run in enumerate(references):
        record["reference"][f"seed{seed}"] = dice_iou(read_mask(run / "final_mask.tif"), truth, scored)[0]
    (out / "simulation.json").write_text(json.dumps(record, indent=2))
    print(f"\nScored on {len(scored)} slices no arm and no reference labeled (final masks, Dice %):\n")
    print("| labeled slices | suggest | even |")
    print("|---:|---:|---:|")
    for a, b in zip(record["arms"]["suggest"], record["arms"]["even"]):
        print(f"| {a['labeled']} | {100 * a['dice']:.2f} | {100 * b['dice']:.2f} |")
    ref = record["reference"]
    print(
        f"\nreference, {len(reference)} evenly spaced slices, {reference_epochs} epochs: "
        f"seed 0 {100 * ref['seed0']:.2f}, seed 1 {100 * ref['seed1']:.2f}"
    )
    if args.plot:
        plot(Path(args.plot), record, len(reference))
    return record


def plot(path: Path, record: dict, reference_count: int) -> None:
    """Dice against labeled slices for both arms, the reference as a band between its seeds."""
    from emseg_monai.evaluation.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.4, 3.6), dpi=120)
    for arm, marker in zip(ARMS, ("o", "s")):
        points = record["arms"][arm]
        ax.plot([p["labeled"] for p in points], [100 * p["dice"] for p in points], marker=marker, label=arm)
    ref = [100 * v for v in record["reference"].values()]
    ax.axhspan(min(ref), max(ref) + 1e-3, color="0.8", alpha=0.6, label=f"{reference_count} evenly spaced (2 seeds)")
    ax.set_xlabel("labeled slices")
    ax.set_ylabel(f"Dice on {record['scored_slices']} unlabeled slices (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


if __name__ == "__main__":
    main()
