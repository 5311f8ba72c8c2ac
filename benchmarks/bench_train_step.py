"""Training-step speed of the stage-1 network under CPU speed settings (prints a table; not a test).

    python benchmarks/bench_train_step.py --crop 256 --batch 8 --steps 10
    python benchmarks/bench_train_step.py --settings bf16 --features 32,32,64,128,256,32

One training step is what ``train.yaml`` does per iteration: forward a batch of random crops
(B, 1, crop, crop) through the ``BasicUNet`` (``--features``; default: the shipped 16..128 widths),
``DiceCELoss`` (sigmoid) against a random binary label, backward, Adam step. Each setting runs
``--steps`` timed steps after 2 warm-up steps (``compile`` also pays its compilation in the
warm-up, printed separately) and reports seconds per step and the loss after the timed steps, from
the same seed, so settings that change the arithmetic show it.

Settings: ``eager`` (float32), ``channels_last``, ``bf16`` (CPU autocast to bfloat16), ``compile``
(``torch.compile``, needs a C++ compiler).
"""

from __future__ import annotations

import argparse
import time

import torch
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet

SHIPPED = (16, 16, 32, 64, 128, 16)


def run(
    setting: str, crop: int, batch: int, steps: int, features: tuple[int, ...] = SHIPPED
) -> tuple[float, float, float]:
    """(warm-up seconds, seconds per timed step, final loss) of ``setting``."""
    torch.manual_seed(0)
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=features)
    images = torch.rand((batch, 1, crop, crop))
    labels = (torch.rand((batch, 1, crop, crop)) > 0.7).float()
    if setting == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    model = torch.compile(net) if setting == "compile" else net
    loss_fn = DiceCELoss(sigmoid=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting == "bf16"):
            logits = model(images)
        loss = loss_fn(logits.float(), labels)
        loss.backward()
        optimizer.step()
        return float(loss)

    start = time.perf_counter()
    for _ in range(2):
        step()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    return warm, (time.perf_counter() - start) / steps, loss


def widths(text: str) -> tuple[int, ...]:
    """The 6 comma-separated BasicUNet widths of ``--features``."""
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 6:
        raise argparse.ArgumentTypeError(f"--features needs 6 comma-separated widths, got {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=256, help="crop side (the EPFL run: 256 at downsample 2)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--settings", nargs="+", default=["eager", "channels_last", "bf16", "compile"])
    parser.add_argument("--features", type=widths, default=SHIPPED, help="6 widths, e.g. 64,128,256,512,1024,64")
    args = parser.parse_args()
    print(
        f"batch {args.batch} x {args.crop} x {args.crop}, features {args.features}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    rows = []
    for setting in args.settings:
        try:
            warm, per_step, loss = run(setting, args.crop, args.batch, args.steps, args.features)
        except Exception as exc:  # e.g. torch.compile without a working compiler
            print(f"{setting}: failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        rows.append((setting, warm, per_step, loss))
        print(f"{setting}: warm-up {warm:.1f} s, {per_step:.3f} s/step, loss {loss:.4f}", flush=True)
    print("\n| setting | warm-up (s) | s / step | loss after the steps |")
    print("|---|---:|---:|---:|")
    for setting, warm, per_step, loss in rows:
        print(f"| {setting} | {warm:.1f} | {per_step:.3f} | {loss:.4f} |")


if __name__ == "__main__":
    main()
