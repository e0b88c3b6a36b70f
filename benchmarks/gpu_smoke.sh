#!/usr/bin/env bash
# GPU smoke of train.device: `afd sync` and `afd run` (every role) on CUDA for a few steps.
# Run on a CUDA machine from the repository root:  bash benchmarks/gpu_smoke.sh [output folder]
# Passes (exit 0) when both runs exit 0 and each wrote its summary.json.
set -euo pipefail

OUT="${1:-$(mktemp -d -t afd-gpu-smoke-XXXXXX)}"
AFD="${AFD:-afd}"  # or AFD="python3 -m afd_async.cli"
mkdir -p "$OUT"

python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "gpu_smoke: CUDA is not available")'
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true

echo "== afd sync on cuda -> $OUT/sync"
$AFD sync experiment=smoke train.device=cuda train.steps=4 text.kind=hash "train.output_dir=$OUT/sync"
test -s "$OUT/sync/summary.json" || { echo "gpu_smoke: FAIL, no $OUT/sync/summary.json"; exit 1; }

echo "== afd run on cuda -> $OUT/run"
$AFD run experiment=smoke train.device=cuda train.steps=4 text.kind=hash "train.output_dir=$OUT/run"
test -s "$OUT/run/summary.json" || { echo "gpu_smoke: FAIL, no $OUT/run/summary.json"; exit 1; }

for mode in sync run; do
  python3 - "$OUT/$mode/summary.json" <<'PY'
import json, math, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[1]}: mode={s['mode']} steps={s['steps']} seconds={s['seconds']} "
      f"final_position_error={s['final']['position_error']:.4f}")
assert s["steps"] == 4 and math.isfinite(s["final"]["position_error"]), s
PY
done
echo "gpu_smoke: OK ($OUT)"
