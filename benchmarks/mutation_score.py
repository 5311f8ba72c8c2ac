"""Mutation score of the core modules: how many small planted bugs the fast tests catch (not a test).

Cosmic Ray (``pip install -e ".[mutation]"``) mutates one module at a time (operators flipped,
comparisons and constants changed, ...) and runs that module's fast tests against each mutant; a
mutant the tests fail on is *killed*, one they pass on *survived*. The work happens in a copy of the
repository (``--output``/src), so the working tree is never touched.

    python benchmarks/mutation_score.py --output runs/mutation                      # every module below
    python benchmarks/mutation_score.py --output runs/mutation --modules emseg_monai/transforms/mpp.py

Prints, per module, mutants, killed, survived, timeouts, equivalents, and the score = killed /
(killed + survived); writes ``survivors.md`` (each survivor's diff, to read) and ``scores.json``.
Equivalent, not scored: mutants of type annotations (never evaluated here) and lines marked
``# pragma: no mutate``. ``--sample N`` tests N mutants per module drawn at random (an estimate of
the score, minutes instead of hours: a full run of transforms/mpp.py alone is 681 mutants).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTEST = f"{sys.executable} -m pytest -x -q -p no:randomly -p no:cacheprovider"
# module -> the fast tests that cover it (seconds each run, not minutes)
MODULES = {
    "emseg_monai/transforms/mpp.py": "tests/test_mpp.py tests/test_anisotropy.py tests/test_edges.py "
    "tests/test_properties.py -k 'not tiny_run and not run_whose and not in_the_file and not bf16 "
    "and not channels_last and not resume and not backend'",
    "emseg_monai/transforms/piecewise_affine.py": "tests/test_piecewise_affine.py",
    "emseg_monai/transforms/windows.py": "tests/test_windows.py",
    "emseg_monai/transforms/stacks.py": "tests/test_stack_transforms.py tests/test_normalize.py "
    "tests/test_inference.py",
    "emseg_monai/data/slices.py": "tests/test_slices.py",
    "emseg_monai/data/normalize.py": "tests/test_normalize.py",
    "emseg_monai/data/datasets.py": "tests/test_datasets.py",
    "emseg_monai/inference/inferer.py": "tests/test_bundle_product.py tests/test_workflows.py",
    "emseg_monai/inference/block.py": "tests/test_blockwise.py -k 'not dask and not kill'",
    "emseg_monai/handlers/checkpoint.py": "tests/test_checkpoint.py tests/test_edges.py tests/test_resume.py "
    "-k 'not sigterm'",
}


# Surviving mutants read one by one and judged unable to change any output, with the reason:
# (module, the line before, the line after, both stripped) -> why. They count as equivalent.
_HALO = "a larger SCM halo only reads more neighbouring slices; each window still takes window // 2 a side"
_BARS = "a progress bar in a block's pass: tqdm writes only to a terminal, and no mask or file changes"
_LOWER = "z0 >> halo <= max(z0 - halo, 0) for every z0, halo >= 0: a larger halo, as above"
EQUIVALENT = {
    **{
        ("emseg_monai/inference/block.py", "halo = settings.window // 2", f"halo = settings.window {op}"): _HALO
        for op in ("<< 2", "| 2", "* 2", "^ 2", "** 2", "+ 2")  # odd windows (validated): w ^ 2 = w +- 2 >= w // 2
    },
    (
        "emseg_monai/inference/block.py",
        "lo, hi = max(z0 - halo, 0), min(z1 + halo, probs.shape[0])",
        "lo, hi = max(z0 - halo, 0), min(z1 << halo, probs.shape[0])",
    ): "z1 << halo >= z1 + halo for z1 >= 1: a larger halo, as above",
    **{
        ("emseg_monai/inference/block.py", line, line.replace("progress=False", "progress=True")): _BARS
        for line in (
            "return stage1(network, read_slices(volume, z0, z1), settings, value_range, progress=False)",
            "final = scm(scm_network, np.asarray(probs[lo:hi]), settings, centers=inner, progress=False)",
        )
    },
    (
        "emseg_monai/data/normalize.py",
        "if size[0] <= batch.shape[-2] and size[1] <= batch.shape[-1]:",
        "if size[0] <= batch.shape[+2] and size[1] <= batch.shape[-1]:",
    ): "the batch is (B, C, H, W): index 2 is index -2",
    (
        "emseg_monai/transforms/mpp.py",
        "votes = mask[np.clip(z - distance, 0, last)].astype(np.uint8) + mask + mask[np.clip(z + distance, 0, last)]",
        "votes = mask[np.clip(z - distance, 0, last)].astype(np.uint8) + mask + mask[np.clip(z + distance, 1, last)]",
    ): "z + distance >= 1 (distance >= 1): the lower bound is never reached",
    (
        "emseg_monai/transforms/piecewise_affine.py",
        "inside = (cols >= lo[:, None]) & (cols <= hi[:, None])",
        "inside = (cols >= lo[:, None]) * (cols <= hi[:, None])",
    ): "* of two bool arrays is their &",
    (
        "emseg_monai/transforms/piecewise_affine.py",
        "self.warp = RandPiecewiseAffine(prob=1.0, grid=grid, scale_range=scale_range, mode=self.mode[0])",
        "self.warp = RandPiecewiseAffine(prob= 2.0, grid=grid, scale_range=scale_range, mode=self.mode[0])",
    ): "a probability of 2 warps always, as 1 does",
    (
        "emseg_monai/transforms/piecewise_affine.py",
        "self._noise = np.zeros((self.grid[0] * self.grid[1], 2))  # standard normal draws",
        "self._noise = np.zeros((self.grid[0] // self.grid[1], 2))  # standard normal draws",
    ): "the zeros are only read at scale 0 (before the first draw replaces them), where any shape gives src",
    (
        "emseg_monai/inference/block.py",
        "lo, hi = max(z0 - halo, 0), min(z1 + halo, probs.shape[0])",
        "lo, hi = max(z0 >> halo, 0), min(z1 + halo, probs.shape[0])",
    ): _LOWER,
    (
        "emseg_monai/data/normalize.py",
        "for start in range(0, stack.shape[0], 16):",
        "for start in range(0, stack.shape[0], 15):",
    ): "chunks of 16 read every 15 slices overlap by one and write the same values twice",
    (
        "emseg_monai/data/normalize.py",
        "if tuple(stack.shape[1:]) == tuple(size):",
        "if tuple(stack.shape[ 0:]) == tuple(size):",
    ): "always resizing instead: resize_tensor returns its input unchanged when the size is already right",
    (
        "emseg_monai/handlers/checkpoint.py",
        "torch.distributed.get_rank() == 0",
        "torch.distributed.get_rank() <= 0",
    ): "ranks are never negative",
    (
        "emseg_monai/transforms/mpp.py",
        "if labeled.size < 2:",
        "if labeled.size < 1:",
    ): "with one labeled slice no slice lies between two, so the vote changes nothing either",
    (
        "emseg_monai/transforms/mpp.py",
        "gap = labeled[np.clip(pos, 0, labeled.size - 1)] - labeled[np.clip(pos - 1, 0, labeled.size - 1)]",
        "gap = labeled[np.clip(pos, 1, labeled.size - 1)] - labeled[np.clip(pos - 1, 0, labeled.size - 1)]",
    ): "pos = 0 (before the first labeled slice) is never inner, and the gap is only used for inner slices",
    (
        "emseg_monai/transforms/mpp.py",
        "prev = labeled[np.clip(pos - 1, 0, labeled.size - 1)][inner]",
        "prev = labeled[np.clip(pos - 1, 0, labeled.size + 1)][inner]",
    ): "for inner slices pos - 1 <= labeled.size - 2: the upper bound is never reached",
    (
        "emseg_monai/transforms/mpp.py",
        "erosions = int(np.floor(int(erosions_per_step) * ratio ** (2 / 3) + 0.5)) if erosions_per_step > 0 else 0",
        "erosions = int(np.floor(int(erosions_per_step) * ratio ** (2 / 3) + 0.5)) if erosions_per_step >= 0 else 0",
    ): "at erosions_per_step = 0 both branches give 0",
}


def judged_equivalent(module: str, diff: str) -> str | None:
    """The reason a surviving mutant (its unified ``diff``) is listed in ``EQUIVALENT``, or None."""
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    if len(removed) != 1 or len(added) != 1:
        return None
    return EQUIVALENT.get((module, removed[0], added[0]))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="folder for the repository copy, sessions and reports")
    parser.add_argument("--modules", nargs="*", default=list(MODULES), help="module paths (default: all listed)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a mutant's tests count as hung")
    parser.add_argument("--sample", type=int, help="test only this many mutants per module, drawn at random")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    return parser.parse_args()


def copy_repository(target: Path) -> Path:
    """The tracked files of this repository, copied to ``target`` (replaced if there)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    if target.exists():
        shutil.rmtree(target)
    for name in files:
        path = ROOT / name
        if path.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)
    return target


def annotation_lines(path: Path) -> set[int]:
    """Lines holding only type annotations (of arguments, returns, annotated assignments) in a module."""
    tree = ast.parse(path.read_text())
    lines: set[int] = set()
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            notes += [a.annotation for a in every if a is not None and a.annotation is not None]
            notes += [node.returns] if node.returns is not None else []
        elif isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        for note in notes:
            lines.update(range(note.lineno, note.end_lineno + 1))
    return lines


def _dump(src: Path, session: Path) -> list:
    out = subprocess.run(["cosmic-ray", "dump", str(session)], cwd=src, capture_output=True, text=True, check=True)
    return [tuple(json.loads(line)) for line in out.stdout.splitlines()]


def _mutate_and_test(src: Path, item: dict, command: str, timeout: float) -> dict | None:
    """One mutant, tested: cosmic-ray's worker result as a dict (None if the worker failed)."""
    m = item["mutations"][0]
    argv = ["cosmic-ray", "mutate-and-test", m["module_path"], m["operator_name"], str(m["occurrence"]), command]
    # its own process group: a hung mutant's pytest (a child of cosmic-ray) is killed with it
    proc = subprocess.Popen(
        argv, cwd=src, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout + 60)
        return json.loads(out)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    except json.JSONDecodeError:
        pass
    return {"worker_outcome": "abnormal", "test_outcome": "incompetent"}


def run_module(
    src: Path, out: Path, module: str, tests: str, timeout: float, sample: int | None = None, seed: int = 0
) -> dict:
    """Mutate ``module`` in ``src``, run ``tests`` per mutant (all, or a random ``sample``); counts and survivors.

    A mutant on a line that only holds type annotations counts as equivalent: this package's modules
    use ``from __future__ import annotations``, so annotations are never evaluated.
    """
    stem = module.replace("/", "_").removesuffix(".py")
    config, session = out / f"{stem}.toml", out / f"{stem}.sqlite"
    command = f"{PYTEST} {tests.replace(chr(34), chr(39))}"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f'test-command = "{command}"\n'
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    session.unlink(missing_ok=True)
    subprocess.run(["cosmic-ray", "init", str(config), str(session)], cwd=src, check=True)
    subprocess.run(["cr-filter-pragma", str(session)], cwd=src, check=True)
    annotations = annotation_lines(src / module)
    start = time.perf_counter()
    if sample is None:
        subprocess.run(["cosmic-ray", "exec", str(config), str(session)], cwd=src, check=True)
        results = _dump(src, session)
        population = None
    else:  # a random sample of the mutants that are neither filtered nor annotations (those need no run)
        every = _dump(src, session)
        pending = [(i, r) for i, r in every if r is None and i["mutations"][0]["start_pos"][0] not in annotations]
        chosen = random.Random(seed).sample(pending, min(sample, len(pending)))
        original = (src / module).read_text()
        results = []
        for item, _ in chosen:
            results.append((item, _mutate_and_test(src, item, command, timeout)))
            if (src / module).read_text() != original:  # a worker killed before it could restore the file
                (src / module).write_text(original)
        results += [(i, r) for i, r in every if (i, r) not in pending]  # filtered and annotation mutants
        population = len(pending)
    seconds = time.perf_counter() - start
    counts = {"killed": 0, "survived": 0, "incompetent": 0, "skipped": 0, "equivalent": 0}
    survivors, reviewed = [], []
    for item, result in results:
        mutation = item["mutations"][0]
        outcome = result.get("test_outcome") if result else None
        if mutation["start_pos"][0] in annotations:
            counts["equivalent"] += 1  # a type annotation: never evaluated (from __future__ import annotations)
        elif result is None or result.get("worker_outcome") in ("skipped", "no-test"):
            counts["skipped"] += 1  # filtered by a pragma, or nothing to mutate
        elif outcome == "killed":
            counts["killed"] += 1
        elif outcome == "survived" and judged_equivalent(module, result.get("diff", "")):
            counts["equivalent"] += 1
            reviewed.append(
                {"line": mutation["start_pos"][0], "why": judged_equivalent(module, result.get("diff", ""))}
            )
        elif outcome == "survived":
            counts["survived"] += 1
            survivors.append(
                {
                    "line": mutation["start_pos"][0],
                    "operator": mutation["operator_name"],
                    "diff": result.get("diff", ""),
                }
            )
        else:
            counts["incompetent"] += 1  # timeouts and mutants that break the import
    scored = counts["killed"] + counts["survived"]
    return {
        "module": module,
        **counts,
        "score": counts["killed"] / scored if scored else None,
        "sampled_from": population,
        "seconds": round(seconds),
        "survivors": survivors,
        "judged_equivalent": reviewed,
    }


def main() -> None:
    args = parse_args()
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        raise SystemExit(f"no tests listed for {unknown}; known modules: {', '.join(MODULES)}")
    src = copy_repository(out / "src")
    results = [
        run_module(src, out, module, MODULES[module], args.timeout, args.sample, args.seed) for module in args.modules
    ]
    (out / "scores.json").write_text(json.dumps(results, indent=1))
    with (out / "survivors.md").open("w") as report:
        for r in results:
            report.write(f"# {r['module']}: {len(r['survivors'])} survivors\n\n")
            for s in r["survivors"]:
                report.write(f"## line {s['line']} ({s['operator']})\n\n```diff\n{s['diff']}\n```\n\n")
            for s in r["judged_equivalent"]:
                report.write(f"- survived, judged equivalent: line {s['line']}: {s['why']}\n")
            report.write("\n")
    killed = sum(r["killed"] for r in results)
    survived = sum(r["survived"] for r in results)
    print("| module | mutants run | of | killed | survived | timeout or broken | equivalent | score | minutes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        run = r["killed"] + r["survived"] + r["incompetent"]
        population = r["sampled_from"] if r["sampled_from"] is not None else run
        score = f"{100 * r['score']:.1f}%" if r["score"] is not None else "-"
        equivalent = r["skipped"] + r["equivalent"]
        print(
            f"| {r['module']} | {run} | {population} | {r['killed']} | {r['survived']} | {r['incompetent']} "
            f"| {equivalent} | {score} | {r['seconds'] / 60:.1f} |"
        )
    if killed + survived:
        print(
            f"\nall: {killed} killed of {killed + survived} scored mutants = {100 * killed / (killed + survived):.1f}%"
        )
    print(f"survivors: {out / 'survivors.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
