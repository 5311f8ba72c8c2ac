"""Mutation score of the core modules: how many small planted bugs the fast tests catch (not a test).

Cosmic Ray (``pip install -e ".[mutation]"``) mutates one module at a time (operators flipped,
comparisons and constants changed, ...) and runs that module's fast tests against each mutant; a
mutant the tests fail on is *killed*, one they pass on *survived*. The work happens in a copy of the
repository (``--output``/src), so the working tree is never touched.

    python benchmarks/mutation_score.py --output runs/mutation                      # every module below
    python benchmarks/mutation_score.py --output runs/mutation --modules emseg_monai/transforms/mpp.py

Prints, per module, mutants, killed, survived, timeouts, the lines excluded as equivalent, and the
score = killed / (killed + survived); writes ``survivors.md`` (each survivor's diff, to read) and
``scores.json``. Lines whose mutants cannot change behaviour (log messages, docstrings' examples
aside) are marked in the code with ``# pragma: no mutate`` and listed by the report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTEST = f"{sys.executable} -m pytest -x -q -p no:randomly -p no:cacheprovider"
# module -> the fast tests that cover it (seconds each run, not minutes)
MODULES = {
    "emseg_monai/transforms/mpp.py": "tests/test_mpp.py tests/test_anisotropy.py -k 'not tiny_run and not run_whose "
    "and not in_the_file'",
    "emseg_monai/transforms/piecewise_affine.py": "tests/test_piecewise_affine.py",
    "emseg_monai/transforms/windows.py": "tests/test_windows.py",
    "emseg_monai/transforms/stacks.py": "tests/test_windows.py tests/test_datasets.py",
    "emseg_monai/data/slices.py": "tests/test_slices.py",
    "emseg_monai/data/normalize.py": "tests/test_normalize.py",
    "emseg_monai/data/datasets.py": "tests/test_datasets.py",
    "emseg_monai/inference/inferer.py": "tests/test_inference.py tests/test_layers.py",
    "emseg_monai/inference/block.py": "tests/test_blockwise.py -k 'not dask and not kill'",
    "emseg_monai/handlers/checkpoint.py": "tests/test_edges.py tests/test_resume.py -k 'not sigterm'",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="folder for the repository copy, sessions and reports")
    parser.add_argument("--modules", nargs="*", default=list(MODULES), help="module paths (default: all listed)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a mutant's tests count as hung")
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


def run_module(src: Path, out: Path, module: str, tests: str, timeout: float) -> dict:
    """Mutate ``module`` in ``src``, run ``tests`` per mutant; returns the counts and the survivors."""
    stem = module.replace("/", "_").removesuffix(".py")
    config, session = out / f"{stem}.toml", out / f"{stem}.sqlite"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f'test-command = "{PYTEST} {tests.replace(chr(34), chr(39))}"\n'
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    session.unlink(missing_ok=True)
    subprocess.run(["cosmic-ray", "init", str(config), str(session)], cwd=src, check=True)
    subprocess.run(["cr-filter-pragma", str(session)], cwd=src, check=True)
    start = time.perf_counter()
    subprocess.run(["cosmic-ray", "exec", str(config), str(session)], cwd=src, check=True)
    seconds = time.perf_counter() - start
    dump = subprocess.run(["cosmic-ray", "dump", str(session)], cwd=src, capture_output=True, text=True, check=True)
    counts = {"killed": 0, "survived": 0, "incompetent": 0, "skipped": 0}
    survivors = []
    for line in dump.stdout.splitlines():
        item, result = json.loads(line)
        if result is None:
            counts["skipped"] += 1  # filtered by a pragma: judged equivalent
            continue
        outcome = result.get("test_outcome")
        if result.get("worker_outcome") == "skipped":
            counts["skipped"] += 1
        elif outcome == "killed":
            counts["killed"] += 1
        elif outcome == "survived":
            counts["survived"] += 1
            mutation = item["mutations"][0]
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
        "seconds": round(seconds),
        "survivors": survivors,
    }


def main() -> None:
    args = parse_args()
    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        raise SystemExit(f"no tests listed for {unknown}; known modules: {', '.join(MODULES)}")
    src = copy_repository(out / "src")
    results = [run_module(src, out, module, MODULES[module], args.timeout) for module in args.modules]
    (out / "scores.json").write_text(json.dumps(results, indent=1))
    with (out / "survivors.md").open("w") as report:
        for r in results:
            report.write(f"# {r['module']}: {len(r['survivors'])} survivors\n\n")
            for s in r["survivors"]:
                report.write(f"## line {s['line']} ({s['operator']})\n\n```diff\n{s['diff']}\n```\n\n")
    killed = sum(r["killed"] for r in results)
    survived = sum(r["survived"] for r in results)
    print("| module | mutants | killed | survived | timeout or broken | equivalent (pragma) | score | minutes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        total = r["killed"] + r["survived"] + r["incompetent"] + r["skipped"]
        score = f"{100 * r['score']:.1f}%" if r["score"] is not None else "-"
        print(
            f"| {r['module']} | {total} | {r['killed']} | {r['survived']} | {r['incompetent']} | {r['skipped']} "
            f"| {score} | {r['seconds'] / 60:.1f} |"
        )
    if killed + survived:
        print(
            f"\nall: {killed} killed of {killed + survived} scored mutants = {100 * killed / (killed + survived):.1f}%"
        )
    print(f"survivors: {out / 'survivors.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
