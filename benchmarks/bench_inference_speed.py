"""Forward-pass speed of the shipped networks under each inference setting (prints a table; not a test).

    python benchmarks/bench_inference_speed.py --size 1024 --batch 4 --repeats 3

Each setting runs the shipped stage-1 and SCM ``BasicUNet`` (bundle/models) on a random batch
(B, C, size, size) float32 -- ``size`` is the slice at network resolution: a 2048 x 2048 slice at
the shipped downsample 2 is 1024 -- and reports the best of ``--repeats`` timed passes (after one
warm-up), the throughput in Mvoxel/s of full-resolution input that this means for stage 1 + SCM
(each full-resolution slice costs one pass of each network), and the largest difference from
plain torch.

Settings: ``torch`` (inference mode), ``channels_last``, ``bf16`` (CPU autocast to bfloat16),
``onnx`` (ONNX Runtime, needs the ``export`` extra), each at the thread count of ``--threads``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from emseg_monai import default_bundle_root
from emseg_monai.inference.backends import onnx_available, to_backend
from emseg_monai.networks import load_weights
from emseg_monai.training.bundle import config_defaults


def shipped_networks() -> dict[str, torch.nn.Module]:
    from monai.networks.nets import BasicUNet

    models = Path(default_bundle_root()) / "models"
    trained = config_defaults(Path(default_bundle_root()) / "configs" / "inference.yaml")
    features, window = trained["stage1_features"], trained["scm_window"]
    nets = {
        "stage1": BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=features),
        "scm": BasicUNet(spatial_dims=2, in_channels=window, out_channels=1, features=features),
    }
    load_weights(nets["stage1"], models / "model.pt")
    load_weights(nets["scm"], models / "scm.pt")
    return {k: v.eval() for k, v in nets.items()}


@torch.inference_mode()
def time_call(fn, batch: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn(batch)  # warm-up (ONNX Runtime and oneDNN pick kernels on the first call)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(batch)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="slice side at network resolution")
    parser.add_argument("--batch", type=int, default=4, help="slices per forward pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--settings", nargs="+", default=["torch", "channels_last", "bf16", "onnx"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = config_defaults(Path(default_bundle_root()) / "configs" / "inference.yaml")
    downsample = float(settings["stage1_downsample"])
    nets = shipped_networks()
    rng = np.random.default_rng(0)
    batches = {
        name: torch.from_numpy(
            rng.random((args.batch, net.conv_0.conv_0.conv.in_channels, args.size, args.size), dtype=np.float32)
        )
        for name, net in nets.items()
    }
    full_voxels = args.batch * (args.size * downsample) ** 2
    print(f"batch {args.batch} x {args.size} x {args.size}, {args.threads} threads, torch {torch.__version__}")
    reference: dict[str, torch.Tensor] = {}
    rows = []
    for setting in args.settings:
        if setting == "onnx" and not onnx_available():
            print("onnx: skipped (pip install 'emseg-monai[export]')")
            continue
        seconds = {}
        diffs = []
        for name, net in nets.items():
            fn = to_backend(net, setting, threads=args.threads)
            seconds[name], out = time_call(fn, batches[name], args.repeats)
            out = out.float()
            if setting == "torch":
                reference[name] = out
            elif name in reference:
                diffs.append(float((torch.sigmoid(out) - torch.sigmoid(reference[name])).abs().max()))
        total = seconds["stage1"] + seconds["scm"]
        diff = f"{max(diffs):.1e}" if diffs else "-"
        rows.append((setting, seconds["stage1"], seconds["scm"], full_voxels / total / 1e6, diff))
        print(
            f"{setting}: stage 1 {seconds['stage1']:.2f} s, SCM {seconds['scm']:.2f} s, "
            f"{full_voxels / total / 1e6:.2f} Mvoxel/s, max |prob diff| {diff}",
            flush=True,
        )
    print("\n| setting | stage 1 (s/batch) | SCM (s/batch) | Mvoxel/s (stage 1 + SCM) | max prob diff vs torch |")
    print("|---|---:|---:|---:|---:|")
    for setting, s1, s2, speed, diff in rows:
        print(f"| {setting} | {s1:.2f} | {s2:.2f} | {speed:.2f} | {diff} |")


if __name__ == "__main__":
    main()
