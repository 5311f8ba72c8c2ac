#!/usr/bin/env bash
# GPU checks run through the device tool (not CI; see .gpu/README.md for the lessons of past leases).
# What travels (ignored folders made by `bash .gpu/prepare.sh DATA_DIR`, named in each run's `carry`):
#   .whl/        monai, fire, pytorch-ignite, termcolor, zarr (+ numcodecs, donfig, google-crc32c)
#                wheels: the GPU image has torch, numpy, scipy, scikit-image, tifffile, onnxruntime,
#                matplotlib, pytest-xdist; it lacks these (zarr reads every TIFF: open_volume)
#   .gpudata_a/  the first third of training.tif + training_groundtruth.tif     (call 1: prep)
#   .gpudata_b/  the second third                                               (call 2: tests)
#   .gpudata_c/  the last third                                                 (call 3: train)
# A carried folder not named again in the next call is REMOVED there, but /tmp persists while the
# machine stays warm (30 s after a call): each call copies its part to /tmp/epfl_parts. Issue the
# three calls back to back.
#   bash .gpu/gpu_check.sh prep    # wheels installed, first part copied (start-up of the machine)
#   bash .gpu/gpu_check.sh tests   # the whole suite, one torch thread per process, names printed
#   bash .gpu/gpu_check.sh train   # the paper's wide network, full resolution: PROTOCOLS (val zsplit)
set -u
mode=$1
OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1
if [ ! -d /tmp/site/monai ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD
mkdir -p /tmp/epfl_parts
for x in a b c; do
  if [ -f .gpudata_$x/tr.part ]; then cp .gpudata_$x/tr.part /tmp/epfl_parts/tr.part_$x; fi
done
if [ -f .gpudata_a/training_groundtruth.tif ]; then cp .gpudata_a/training_groundtruth.tif /tmp/epfl_parts/; fi
ls /tmp/epfl_parts
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, monai, emseg_monai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'monai', monai.__version__, 'emseg', emseg_monai.__version__)"
if [ "$mode" = prep ]; then exit 0; fi
if [ "$mode" = tests ]; then
  # one torch thread per test process: 14 processes with full threads on 16 cores ran 10-15 % of
  # the suite in 100-200 s (two leases); names printed as they finish (-v; pyproject's addopts -q
  # cancelled it in the third lease, hence -o addopts=""), so a cut-off run still
  # says which failed. tests/test_cuda.py is the file that puts the GPU to work (the rest pins cpu).
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  start=$(date +%s)
  timeout ${TEST_LIMIT:-120} python3 -m pytest -n 14 -o addopts="" -v -p no:cacheprovider -rfEs \
    --continue-on-collection-errors tests > $OUT/tests_all.log 2>&1
  echo "whole suite: rc=$? in $(( $(date +%s) - start )) s (124: cut at ${TEST_LIMIT:-120} s)"
  grep -E "test_cuda" $OUT/tests_all.log | grep -E "PASSED|FAILED|ERROR|SKIPPED" | sed 's/^\[gw[0-9]*\] //' | cut -c1-160
  grep -E "^(FAILED|ERROR)" $OUT/tests_all.log | cut -c1-200 | head -40
  tail -2 $OUT/tests_all.log
  exit 0
fi
# train
mkdir -p /tmp/epfl
cat /tmp/epfl_parts/tr.part_a /tmp/epfl_parts/tr.part_b /tmp/epfl_parts/tr.part_c > /tmp/epfl/training.tif
cp /tmp/epfl_parts/training_groundtruth.tif /tmp/epfl/
md5sum /tmp/epfl/training.tif   # expect 272307e3a54a7da696fe9b600e21557f
wide="--data-dir /tmp/epfl --features 64,128,256,512,1024,64 --downsample 1 --crop-size 512 --device cuda --precision bf16 --num-workers 6 --seed 0"
limit=${TRAIN_LIMIT:-470}
(nvidia-smi dmon -s um -d 10 > $OUT/dmon.log 2>&1 &)
start=$(date +%s)
for p in ${PROTOCOLS:-val zsplit}; do
  timeout $limit python3 benchmarks/epfl_recipe.py $wide --protocol $p --output /tmp/g_$p > $OUT/$p.log 2>&1 &
done
for p in ${PROTOCOLS:-val zsplit}; do
  wait -n; echo "a run ended rc=$? after $(( $(date +%s) - start )) s"
done
for p in ${PROTOCOLS:-val zsplit}; do
  cp /tmp/g_$p/recipe.json $OUT/${p}_recipe.json 2>/dev/null
  cp /tmp/g_$p/run/mpp_check.json $OUT/${p}_mpp_check.json 2>/dev/null
  for f in /tmp/g_$p/run/*history*.csv /tmp/g_$p/run/models/*history*.csv; do [ -f "$f" ] && cp "$f" $OUT/${p}_$(basename $f); done
  echo "== $p"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps(d.get('train_seconds')), json.dumps(d.get('scores')))" $OUT/${p}_recipe.json 2>&1 | tail -1
  tail -4 $OUT/$p.log
done
[ -d /tmp/g_val/run ] && python3 .gpu/score_partial.py /tmp/g_val/run 2>&1 | head -4
