#!/usr/bin/env bash
# GPU checks run through the device tool (not CI). Data and wheels travel in ignored folders:
#   .whl/ (monai, fire, pytorch-ignite, termcolor wheels), .gpudata_a/ + .gpudata_b/ (training.tif
#   split in two byte ranges to fit the 64 MiB per call, plus training_groundtruth.tif).
#   bash .gpu/gpu_check.sh tests   # the test suite on the GPU machine
#   bash .gpu/gpu_check.sh train   # the paper's wide network, full resolution: val + Z-split at once
set -u
mode=$1
OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1
if [ ! -d /tmp/site/monai ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, monai, emseg_monai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'monai', monai.__version__, 'emseg', emseg_monai.__version__)"
if [ "$mode" = tests ]; then
  start=$(date +%s)
  timeout ${TEST_LIMIT:-100} python3 -m pytest -n 14 -p no:cacheprovider -rfE --continue-on-collection-errors \
    --junitxml=$OUT/junit.xml tests > $OUT/tests.log 2>&1
  echo "pytest rc=$? in $(( $(date +%s) - start )) s"
  tail -60 $OUT/tests.log
  exit 0
fi
# train
mkdir -p /tmp/epfl
cat .gpudata_a/tr.part .gpudata_b/tr.part > /tmp/epfl/training.tif
cp .gpudata_a/training_groundtruth.tif /tmp/epfl/
md5sum /tmp/epfl/training.tif   # expect 272307e3a54a7da696fe9b600e21557f
wide="--data-dir /tmp/epfl --features 64,128,256,512,1024,64 --downsample 1 --crop-size 512 --device cuda --precision bf16 --num-workers 6 --seed 0"
limit=${TRAIN_LIMIT:-470}
(nvidia-smi dmon -s um -d 10 > $OUT/dmon.log 2>&1 &)
start=$(date +%s)
timeout $limit python3 benchmarks/epfl_recipe.py $wide --protocol val --output /tmp/gv > $OUT/val.log 2>&1 &
timeout $limit python3 benchmarks/epfl_recipe.py $wide --protocol zsplit --output /tmp/gz > $OUT/zsplit.log 2>&1 &
wait %1; echo "val rc=$? after $(( $(date +%s) - start )) s"
wait %2; echo "zsplit rc=$? after $(( $(date +%s) - start )) s"
cp /tmp/gv/recipe.json $OUT/val_recipe.json 2>/dev/null
cp /tmp/gz/recipe.json $OUT/zsplit_recipe.json 2>/dev/null
python3 .gpu/score_partial.py /tmp/gv/run > $OUT/partial_scores.txt 2>&1
cat $OUT/partial_scores.txt
grep -h -E "Epoch|epoch|seconds|Dice|WARN|Error|error" $OUT/val.log | tail -25
tail -15 $OUT/zsplit.log
