#!/usr/bin/env bash
# Makes what .gpu/gpu_check.sh carries to a lent GPU machine (run once per checkout, from the
# project root, with the project's .venv active): the wheels the GPU image lacks in .whl/ and the
# EPFL stack in three byte ranges (.gpudata_a/b/c, each with the rest under 64 MiB per call).
# Usage: bash .gpu/prepare.sh DATA_DIR      (DATA_DIR holds training.tif and training_groundtruth.tif)
set -euo pipefail
data=${1:?usage: bash .gpu/prepare.sh DATA_DIR}
mkdir -p .whl .gpudata_a .gpudata_b .gpudata_c
for d in .whl .gpudata_a .gpudata_b .gpudata_c; do
  grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude
done
version() { python -c "import importlib.metadata as m; print(m.version('$1'))"; }
pins=""
for p in monai fire pytorch-ignite termcolor zarr numcodecs donfig google-crc32c; do pins="$pins $p==$(version $p)"; done
python -m pip download -q --no-deps -d .whl --python-version 3.12 --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 $pins
size=$(stat -c %s "$data/training.tif")
part=$(( size / 3 + 1 ))
i=0
for d in .gpudata_a .gpudata_b .gpudata_c; do
  dd if="$data/training.tif" of=$d/tr.part bs=1M iflag=skip_bytes,count_bytes skip=$(( i * part )) count=$part status=none
  i=$(( i + 1 ))
done
cp -f "$data/training_groundtruth.tif" .gpudata_a/
cat .gpudata_a/tr.part .gpudata_b/tr.part .gpudata_c/tr.part | cmp - "$data/training.tif" && echo "parts ok"
du -sh .whl .gpudata_a .gpudata_b .gpudata_c
