"""The napari Segment path on a stack of shifted sections, with and without the shift guard (not a test).

Runs what the plugin's Segment widget runs for a layer with a scale in nm (``load_bundle_networks``
with the layer's voxel size, ``voxel_match.shifted_sections``, ``napari._segment.segment_steps``),
headless, and scores the masks on the unlabeled slices:

    python benchmarks/napari_shift_guard.py --run RUN --data runs/gen_rough/data_epfl8rough \\
        --voxel-size 40,5,5 --labeled every:4

``RUN`` is a run folder (a bundle) trained on thick sections; ``--data`` holds ``image.tif`` and
``label.tif``. docs/results.md ("A rough serial-section stack") used a copy of the rough proxy's run
with ``use_scm: true``.
"""

from __future__ import annotations

import argparse
import time

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou, markdown_table
from emseg_monai.inference.voxel_match import shifted_sections
from emseg_monai.io import read_mask, read_stack
from emseg_monai.napari._segment import segment_steps
from emseg_monai.workflows import load_bundle_networks


def run_steps(image, networks, settings):
    """The masks (Z, Y, X) uint8 0/1 that ``segment_steps`` returns once its progress steps are used up."""
    steps = segment_steps(image, networks, settings)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--voxel-size", default="40,5,5", help="the layer's scale, Z,Y,X nm")
    parser.add_argument("--labeled", default="every:4", help="the run's labeled slices (not scored)")
    args = parser.parse_args()
    image, truth = read_stack(f"{args.data}/image.tif"), read_mask(f"{args.data}/label.tif")
    scored = complement(parse_slice_spec(args.labeled, image.shape[0]), image.shape[0])
    stage1, scm, settings, _ = load_bundle_networks(args.run, match_voxel_size=True, voxel_size=args.voxel_size)
    shifted = shifted_sections(image, settings.scm_downsample, warn=False)
    print(
        f"shift quartile and limit (px): {shifted}; smoothing {settings.smoothing}, smoothing_z {settings.smoothing_z}"
    )
    rows = []
    for name, chosen in (
        ("smoothing_z unset (before 0.8.10)", settings),
        ("smoothing_z 0", settings.replace(smoothing_z=0.0)),
    ):
        start = time.perf_counter()
        dice, iou = dice_iou(run_steps(image, (stage1, scm), chosen) > 0, truth, scored)
        rows.append((name, dice, iou))
        print(f"{name}: {time.perf_counter() - start:.0f} s")
    print(markdown_table(rows, header=("settings", "Dice (%)", "IoU (%)")))


if __name__ == "__main__":
    main()
