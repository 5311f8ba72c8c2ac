"""Which slices to label next: rank the unlabeled slices of a training run's stack.

Signals, per slice z of the (Z, Y, X) training stack, all computed from what ``emseg train`` left
in the run folder (no label is read):

- ``distance``: slices to the nearest labeled slice. MPP spreads each label to its neighbours, and
  stage 1 is best near the slices it trained on, so far slices gain most from a new label;
- ``uncertainty``: mean binary entropy (bits) of the stage-1 probabilities of the slice;
- ``disagreement``: how much the second half of the pipeline changed stage 1 there,
  1 - Dice(stage-1 mask, final mask) and 1 - Dice(stage-1 mask, MPP targets), averaged.

Uncertainty and disagreement are turned into ranks among the unlabeled slices (0 lowest, 1
highest) and averaged into ``info``. Slices are then picked one at a time by

    priority(z) = distance(z) / max distance * (0.5 + 0.5 * info(z))

and each pick counts as labeled for the next one, so the picks spread out (with no signal, the
rule labels the middle of the widest gap: evenly spaced labels) and, between two slices about as
far from any label, the one stage 1 finds harder wins.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emseg_monai.data.slices import parse_slice_spec
from emseg_monai.errors import InputError
from emseg_monai.evaluation.metrics import per_slice_scores
from emseg_monai.io.stacks import atomic_write, check_output_path, read_mask, read_stack

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("slice", "labeled", "distance", "uncertainty", "disagreement", "info", "suggested")
HIGH = 0.75  # an info rank at or above this is named in a suggestion's reason


@dataclass(frozen=True)
class Suggestion:
    """One slice to label: its index, pick order (1 first), the signals and the reason in words."""

    slice: int
    order: int
    distance: int
    uncertainty: float
    disagreement: float
    info: float
    reason: str


def label_distance(labeled: np.ndarray, n_slices: int) -> np.ndarray:
    """(Z,) int64: slices from each slice to the nearest of ``labeled`` (0 on labeled slices).

    With no labeled slice at all every slice gets ``n_slices``.
    """
    z = np.arange(n_slices)
    if len(labeled) == 0:
        return np.full(n_slices, n_slices, dtype=np.int64)
    return np.abs(z[:, None] - np.asarray(labeled)[None, :]).min(axis=1).astype(np.int64)


def slice_entropy(prob: np.ndarray) -> np.ndarray:
    """(Z,) float64: mean binary entropy (bits) of each slice of (Z, Y, X) probabilities.

    ``prob`` is uint8 (0..255 for 0..1, as ``emseg train`` writes ``stage1_prob.tif``) or float in [0, 1].
    """
    if prob.dtype == np.uint8:
        p = np.arange(256) / 255.0
        with np.errstate(divide="ignore", invalid="ignore"):
            table = np.nan_to_num(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)))
        return np.array([table[s].mean() for s in prob])
    p = np.clip(np.asarray(prob, dtype=np.float64), 1e-12, 1 - 1e-12)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(axis=(1, 2))


def slice_disagreement(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(Z,) float64: 1 - Dice of two (Z, Y, X) masks per slice (0 where both are empty)."""
    return 1.0 - per_slice_scores(first, second)["dice"]


def _ranks(values: np.ndarray, among: np.ndarray) -> np.ndarray:
    """(Z,) ranks of ``values`` scaled to [0, 1] among the slices ``among`` (ties share a rank); 0 elsewhere."""
    out = np.zeros(len(values))
    if len(among) < 2:
        return out
    chosen = values[among]
    order = np.searchsorted(np.unique(chosen), chosen)
    out[among] = order / max(order.max(), 1)
    return out


def rank_slices(
    labeled: np.ndarray,
    n_slices: int,
    count: int,
    uncertainty: np.ndarray | None = None,
    disagreement: np.ndarray | None = None,
) -> tuple[list[Suggestion], np.ndarray]:
    """Pick ``count`` slices to label next (see the module docstring); returns them and the (Z,) info.

    Parameters
    ----------
    labeled : (K,) int array
        Slices already labeled.
    n_slices : int
        Slices in the stack (Z).
    count : int
        Slices to suggest, at least 1 and at most the unlabeled ones.
    uncertainty, disagreement : (Z,) float arrays or None
        The signals; a missing one is left out of ``info``.
    """
    labeled = np.unique(np.asarray(labeled, dtype=np.int64))
    unlabeled = np.setdiff1d(np.arange(n_slices), labeled)
    if not 1 <= count <= len(unlabeled):
        raise InputError(f"count must be in 1..{len(unlabeled)} (the unlabeled slices), got {count}")
    named = (("stage 1 unsure", uncertainty), ("the SCM and MPP change stage 1 here", disagreement))
    signals = [(name, _ranks(np.asarray(s, dtype=np.float64), unlabeled)) for name, s in named if s is not None]
    info = np.mean([ranks for _, ranks in signals], axis=0) if signals else np.zeros(n_slices)
    picked: list[int] = []
    for _ in range(count):
        distance = label_distance(np.concatenate([labeled, picked]).astype(np.int64), n_slices)
        priority = distance / max(distance.max(), 1) * (0.5 + 0.5 * info)
        priority[labeled] = -1
        priority[picked] = -1
        picked.append(int(np.argmax(priority)))  # ties: the lowest slice
    first_distance = label_distance(labeled, n_slices)
    suggestions = []
    for order, z in enumerate(picked, start=1):
        u = float(uncertainty[z]) if uncertainty is not None else float("nan")
        d = float(disagreement[z]) if disagreement is not None else float("nan")
        suggestions.append(
            Suggestion(z, order, int(first_distance[z]), u, d, float(info[z]), _reason(z, signals, first_distance))
        )
    return suggestions, info


def _reason(z: int, signals: list[tuple[str, np.ndarray]], distance: np.ndarray) -> str:
    words = [f"{distance[z]} slices from the nearest label"]
    for name, ranks in signals:
        if ranks[z] >= HIGH:
            words.append(f"{name} (top {max(1, int(np.ceil(100 * (1 - ranks[z]))))}% of unlabeled slices)")
    if len(words) == 1:
        words.append("fills a gap")
    return "; ".join(words)


def run_signals(run: str | Path) -> dict[str, np.ndarray]:
    """The signals of a training run folder: ``labeled`` slices, ``uncertainty``, ``disagreement`` (Z,).

    Reads ``stage1_prob.tif``, ``stage1_mask.tif``, ``final_mask.tif`` and ``mpp_mask.tif`` (the last
    two where present) and the labeled slices from ``configs/train.yaml``.
    """
    from emseg_monai.training.bundle import config_defaults

    run = Path(run)
    prob_file, mask_file = run / "stage1_prob.tif", run / "stage1_mask.tif"
    if not (prob_file.is_file() and mask_file.is_file()):
        raise InputError(
            f"no training run in {run}: suggestions need its stage1_prob.tif and stage1_mask.tif "
            "(the --output folder of emseg train)"
        )
    prob = read_stack(prob_file)
    stage1 = read_mask(mask_file, shape=prob.shape)
    labeled = parse_slice_spec(config_defaults(run / "configs" / "train.yaml")["labeled_slices"], prob.shape[0])
    refined = [
        read_mask(run / name, shape=prob.shape) for name in ("final_mask.tif", "mpp_mask.tif") if (run / name).is_file()
    ]
    signals = {"labeled": labeled, "uncertainty": slice_entropy(prob)}
    if refined:
        signals["disagreement"] = np.mean([slice_disagreement(stage1, r) for r in refined], axis=0)
    return signals


def suggest_run(
    run: str | Path,
    count: int = 4,
    csv_file: str | Path | None = None,
    plot_file: str | Path | None = None,
    overwrite: bool = False,
) -> list[Suggestion]:
    """Suggest ``count`` slices of a training run's stack to label next; write the CSV and the figure.

    ``csv_file`` gets one row per slice (``CSV_COLUMNS``; ``suggested`` is the pick order, empty
    when not picked), ``plot_file`` the signals along Z with labeled and suggested slices marked.
    Both are checked before any work and written atomically; None skips one.
    """
    for path in (csv_file, plot_file):
        if path is not None:
            check_output_path(path, overwrite)
    signals = run_signals(run)
    n = len(signals["uncertainty"])
    chosen, info = rank_slices(signals["labeled"], n, count, signals["uncertainty"], signals.get("disagreement"))
    if csv_file is not None:
        write_suggestions_csv(csv_file, signals, info, chosen, overwrite)
    if plot_file is not None:
        save_suggestions_plot(plot_file, signals, info, chosen, overwrite)
    logger.info("suggested slices %s of %d (%d labeled)", [s.slice for s in chosen], n, len(signals["labeled"]))
    return chosen


def print_suggestions(
    run: str | Path,
    count: int = 4,
    csv_file: str | Path | None = None,
    plot_file: str | Path | None = None,
    overwrite: bool = False,
) -> list[Suggestion]:
    """``suggest_run``, then print the picks (one line each) and the files written; returns the picks."""
    from emseg_monai.options import as_bool, as_int

    chosen = suggest_run(run, as_int(count, "count", minimum=1), csv_file, plot_file, as_bool(overwrite, "overwrite"))
    print(f"label these slices next (most useful first), of {Path(run)}:")
    for s in chosen:
        print(f"  slice {s.slice}: {s.reason}")
    for path in (csv_file, plot_file):
        if path is not None:
            print(f"wrote {path}")
    return chosen


def write_suggestions_csv(path, signals: dict, info: np.ndarray, chosen: list[Suggestion], overwrite: bool) -> Path:
    """One row per slice: ``CSV_COLUMNS``."""
    order = {s.slice: s.order for s in chosen}
    labeled = set(int(z) for z in signals["labeled"])
    distance = label_distance(signals["labeled"], len(info))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for z in range(len(info)):
        writer.writerow(
            [
                z,
                int(z in labeled),
                int(distance[z]),
                f"{signals['uncertainty'][z]:.5f}",
                f"{signals['disagreement'][z]:.5f}" if "disagreement" in signals else "",
                f"{info[z]:.4f}",
                order.get(z, ""),
            ]
        )
    return atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()), overwrite=overwrite)


def save_suggestions_plot(path, signals: dict, info: np.ndarray, chosen: list[Suggestion], overwrite: bool) -> Path:
    """PNG: info and its two signals (as ranks) along Z; labeled slices grey, suggestions numbered."""
    from emseg_monai.evaluation.figures import pyplot, save_figure

    plt = pyplot()
    n = len(info)
    unlabeled = np.setdiff1d(np.arange(n), signals["labeled"])
    z = np.arange(n)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for key, name in (("uncertainty", "stage-1 uncertainty (rank)"), ("disagreement", "SCM/MPP vs stage 1 (rank)")):
        if key not in signals:
            continue
        ax.plot(z[unlabeled], _ranks(signals[key], unlabeled)[unlabeled], lw=0.7, alpha=0.6, label=name)
    ax.plot(z[unlabeled], info[unlabeled], lw=1.4, color="k", label="info (their mean)")
    ax.vlines(signals["labeled"], 0, 1, colors="0.75", lw=0.8, zorder=0, label="labeled slices")
    for s in chosen:
        ax.plot(s.slice, info[s.slice], marker="*", ms=12, color="tab:red", zorder=3)
        ax.annotate(str(s.order), (s.slice, info[s.slice]), xytext=(3, 5), textcoords="offset points", fontsize=8)
    ax.plot([], [], marker="*", ls="", color="tab:red", label="suggested (pick order)")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(-0.02, 1.08)
    ax.set_xlabel("slice z")
    ax.set_ylabel("rank among unlabeled slices")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path, overwrite)
