#!/usr/bin/env bash
# The bugs a review planted (docs/reliability.md): each is planted in a fresh clone of this repository and
# the matching tests run; every line must say "caught". Usage: bash benchmarks/planted_bugs.sh [WORK_DIR]
set -u
src=$(git -C "$(dirname "$0")" rev-parse --show-toplevel); work=${1:-$(mktemp -d)}; rm -rf "$work/repo"
mkdir -p "$work"
plant() {  # name file python-replacement-old python-replacement-new tests...
  name=$1 file=$2 old=$3 new=$4; shift 4
  rm -rf $work/repo; git clone -q $src $work/repo
  python3 - "$work/repo/$file" "$old" "$new" <<'PY'
import sys
p, old, new = sys.argv[1:]
s = open(p).read()
assert old in s, (p, old)
open(p, "w").write(s.replace(old, new, 1))
PY
  (cd $work/repo && timeout 900 "$src/.venv/bin/python" -m pytest -x -q -p no:cacheprovider -p no:warnings "$@" > $work/$name.log 2>&1); rc=$?
  echo "$name: pytest rc $rc ($( [ $rc = 1 ] && echo caught || echo NOT CAUGHT)) $(tail -1 $work/$name.log)"
}
plant min_size emseg_monai/transforms/mpp.py "keep = sizes >= min_size" "keep = sizes > min_size" tests/test_edges.py tests/test_mpp.py
plant z_distance emseg_monai/transforms/mpp.py "votes = mask[np.clip(z - distance, 0, last)].astype(np.uint8) + mask + mask[np.clip(z + distance, 0, last)]" "votes = mask[np.clip(z - 1, 0, last)].astype(np.uint8) + mask + mask[np.clip(z + 1, 0, last)]" tests/test_edges.py tests/test_mpp.py
plant backend emseg_monai/inference/backends.py "    if name == \"channels_last\":
        return ChannelsLast(network)
    if name == \"bf16\":
        return Bfloat16(network)" "    if name in (\"channels_last\", \"bf16\"):
        return network" tests/test_backends.py tests/test_precision.py tests/test_edges.py
plant use_scm bundle/configs/inference.yaml "if @settings.use_scm else None" "if not @settings.use_scm else None" tests/test_bundle_product.py tests/test_workflows.py
plant resume emseg_monai/handlers/checkpoint.py "            unwrap(self.network).load_state_dict(state[\"model\"])
            self.optimizer.load_state_dict(state[\"optimizer\"])" "            pass" tests/test_checkpoint.py tests/test_edges.py
