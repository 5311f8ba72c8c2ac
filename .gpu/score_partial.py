"""Score whatever masks a (maybe interrupted) val-protocol run left, on the 133 unlabeled slices."""

import sys
from pathlib import Path

from emseg_monai.data.slices import complement, parse_slice_spec
from emseg_monai.evaluation import dice_iou
from emseg_monai.io import read_mask

run = Path(sys.argv[1])
truth = read_mask("/tmp/epfl/training_groundtruth.tif")
scored = complement(parse_slice_spec("0:156:5", truth.shape[0]), truth.shape[0])
for name in ("stage1_mask", "mpp_mask", "final_mask", "finished_mask"):
    f = run / f"{name}.tif"
    if f.is_file():
        dice, iou = dice_iou(read_mask(f), truth, scored)
        print(f"{name}: Dice {100 * dice:.2f} IoU {100 * iou:.2f}")
    else:
        print(f"{name}: missing")
for f in sorted(run.glob("*history*.csv")) + sorted((run / "models").glob("*.json")):
    print(f, f.read_text()[-600:])
