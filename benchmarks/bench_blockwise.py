"""Block-wise segmentation speed and memory on synthetic uint8 volumes (prints a table; not a test).

    python benchmarks/bench_blockwise.py --sizes 64x2048x2048 256x2048x2048 --modes single dask2 --block 32

For each size, a synthetic EM-like volume is written to a Zarr array (chunk by chunk, never whole
in memory) in ``--work``; then each mode segments it with the shipped weights (stage 1 + SCM, the
settings of bundle/configs/inference.yaml) into a Zarr output, in a fresh process, and reports its
wall time (inside the process, from the call to the written output), throughput (Mvoxel/s of
input) and peak resident memory: of all its processes together (sampled every 0.1 s), of the main
process and of the largest Dask worker (both exact, from getrusage).

Modes: ``single`` (one process), ``dask2`` (a LocalCluster of 2 single-threaded workers).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import torch
from emseg_monai.workflows import segment_file
args = json.loads(sys.argv[1])
start = time.perf_counter()
segment_file(args["image"], args["output"], overwrite=True, block_size=args["block"],
             dask_workers=args["workers"] or None, device="cpu", backend=args["backend"],
             smoothing=args["smoothing"], match_voxel_size=False)  # synthetic: both stages always run
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest worker process
print(json.dumps({"seconds": seconds, "peak_mib": peak, "worker_peak_mib": workers}))
"""


def make_volume(path: Path, shape: tuple[int, int, int], chunk: int = 16) -> None:
    """Write a synthetic uint8 (Z, Y, X) volume to a Zarr array, ``chunk`` slices at a time."""
    import zarr

    from emseg_monai.data import make_synthetic_stack

    if path.exists():
        return
    tile_z, tile = min(chunk, shape[0]), 512
    image, _ = make_synthetic_stack((tile_z, tile, tile), seed=0)
    array = zarr.create_array(str(path), shape=shape, chunks=(chunk, shape[1], shape[2]), dtype="uint8")
    reps = (-(-shape[1] // tile), -(-shape[2] // tile))
    for z0 in range(0, shape[0], chunk):
        z1 = min(z0 + chunk, shape[0])
        block = np.tile(image, (1, *reps))[:, : shape[1], : shape[2]]
        array[z0:z1] = np.roll(block, z0 // chunk, axis=0)[: z1 - z0]


def run_sampled(argv: list[str], interval: float = 0.1) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``argv``; also return the peak of the summed RSS (MiB) of it and all its descendants."""
    import psutil

    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        outputs: list[str] = []
        reader = threading.Thread(target=lambda: outputs.extend(proc.communicate()))
        reader.start()
        peak = 0
        root = psutil.Process(proc.pid)
        while reader.is_alive():
            try:
                tree = [root, *root.children(recursive=True)]
                total = 0
                for member in tree:
                    try:
                        total += member.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, total)
            except psutil.Error:
                pass
            time.sleep(interval)
        reader.join()
    return subprocess.CompletedProcess(argv, proc.returncode, *outputs), peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["64x2048x2048", "256x2048x2048"])
    parser.add_argument("--modes", nargs="+", default=["single", "dask2"], choices=["single", "dask2"])
    parser.add_argument("--block", type=int, default=32, help="slices per block (emseg segment's default: 32)")
    parser.add_argument("--backend", default="auto", help="inference backend (auto, torch, onnx, ...)")
    parser.add_argument("--smoothing", type=float, default=None, help="the SCM's smoothing (default: the bundle's)")
    parser.add_argument("--work", default="bench_blockwise_work", help="folder for the volumes and outputs")
    parser.add_argument("--keep", action="store_true", help="keep the volumes and outputs")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        shape = tuple(int(v) for v in size.lower().split("x"))
        image = work / f"volume_{size}.zarr"
        start = time.perf_counter()
        make_volume(image, shape)
        print(f"{size}: volume ready in {time.perf_counter() - start:.0f} s", flush=True)
        for mode in args.modes:
            output = work / f"masks_{size}_{mode}.zarr"
            job = {"image": str(image), "output": str(output), "block": args.block, "backend": args.backend}
            job["smoothing"] = args.smoothing
            job["workers"] = 2 if mode == "dask2" else 0
            proc, total_peak = run_sampled([sys.executable, "-c", CHILD, json.dumps(job)])
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{size} {mode} failed")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            voxels = float(np.prod(shape))
            worker = result["worker_peak_mib"] if job["workers"] else float("nan")
            peaks = (max(total_peak, result["peak_mib"]), result["peak_mib"], worker)
            rows.append((size, mode, result["seconds"], voxels / result["seconds"] / 1e6, *peaks))
            print(
                f"{size} {mode} (block {args.block}, backend {args.backend}, smoothing {args.smoothing}): "
                f"{result['seconds']:.1f} s, "
                f"{voxels / result['seconds'] / 1e6:.2f} Mvoxel/s, peak RSS {peaks[0]:.0f} MiB (all processes, "
                f"sampled every 0.1 s), {peaks[1]:.0f} MiB (main process), {peaks[2]:.0f} MiB (largest worker)",
                flush=True,
            )
            if not args.keep:
                shutil.rmtree(output, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(image, ignore_errors=True)
    print("\n| volume | mode | seconds | Mvoxel/s | peak RSS all (MiB) | main (MiB) | largest worker (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for size, mode, seconds, speed, total, peak, worker in rows:
        print(f"| {size} | {mode} | {seconds:.1f} | {speed:.2f} | {total:.0f} | {peak:.0f} | {worker:.0f} |")


if __name__ == "__main__":
    main()
