#!/usr/bin/env bash
# `afd run experiment=wan_1_3b` on one GPU with random weights, every role its own process (issue 20.4).
#
#   bash benchmarks/wan_afd_run.sh real    # on the device, from the repository root: figures into $OUT
#   bash benchmarks/wan_afd_run.sh tiny    # here, on CPU: the same path at experiment=wan_tiny, 2 steps
#
# 1. writes the random-weight files (afd_async/testing/wan_assets.py; real: ~7.5 GB drawn on the GPU) to $WORK;
# 2. runs `afd run` until STEPS student steps or the call's deadline (TOTAL_S, default 540 s, counted from the
#    start of this script), whichever comes first: on the deadline, SIGINT stops every role within
#    train.stop_grace_s and the report reads what was recorded;
# 3. benchmarks/wan_afd_report.py writes $OUT/wan_1_3b_afd_run.json (steps, s/step, pairs/s, busy fractions, GPU
#    peaks, θ_old sync time, step profile); the run's records and role logs come back as one archive.
#
# Where the call's time goes (estimates, to be replaced by the run's figures): wheels ~15 s, weight files ~40 s,
# role start-up ~90 s (imports, a 1.4B student built and loaded in each of the three GPU roles), the student
# learner's physics scoring of one 480x832 clip at start, end and for the teacher floor (~10 s each, CPU),
# then ~10 s of GPU work per group (eager rollout + VAE decode, NFT step, D step) for 1 warm-up + STEPS groups.
# A run the deadline cuts is reported as far as it got; a second call with RESUME=1 finishes it.
#
# The roles share the card as configs/experiment/wan_1_3b.yaml says: each role's allocator capped by
# cluster.gpu_memory_fraction (afd_async/runtime/gpu_share.py), the GPU time-sliced between the processes.
# The device has no network, no redis-server and no Hydra/PyAV/diffusers/ZeroMQ: wheels and Debian's
# redis-server (.whl/redis-bin, a wrapper that gives the binary its libraries) travel in .whl/ (carried; build
# it with `bash benchmarks/device_wheels.sh`).
# Knobs: STEPS (20 real, 2 tiny), COMPILE (false: eager; true compiles the student's elementwise kernels in
# each role, minutes of start-up), TOTAL_S, WORK (default /tmp/wan_afd_run_<size>), OUT, INSTALL_WHEELS (0: skip
# .whl). A second call on the still-warm machine reuses the weight files in WORK, and with RESUME=1 continues a
# run its deadline cut (afd run resumes the folder from the learners' last checkpoints).
set -uo pipefail
t_start=$(date +%s)
size=${1:-real}
out=${OUT:-outputs/wan_afd_run_out}
work=${WORK:-/tmp/wan_afd_run_$size}
total=${TOTAL_S:-540}
mkdir -p "$out" "$work"
[ "${RESUME:-0}" = 1 ] || rm -rf "$work/run"  # a fresh run: afd run would otherwise resume the folder
if [ -d .whl ] && [ "${INSTALL_WHEELS:-1}" = 1 ]; then  # INSTALL_WHEELS=0: this machine has the packages
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  if ! command -v redis-server > /dev/null && [ -x .whl/redis-bin/redis-server ]; then
    export PATH=$PWD/.whl/redis-bin:$PATH
  fi
fi
export PYTHONUNBUFFERED=1
case $size in
  real)
    experiment=wan_1_3b; steps=${STEPS:-20}; batch=1
    student=("student.wan.compile=${COMPILE:-false}")
    # the procedural teacher at the student's size and rate: 81 frames at 16 fps need 5.0625 s of clip
    run=(train.device=cuda teacher.renderer.height=480 teacher.renderer.width=832 teacher.renderer.fps=16
         teacher.renderer.seconds=5.125 algo.d_warmup_steps=1 train.eval_prompts=1 train.d_probe_every=0
         "train.checkpoint_every=$((steps + 1))" train.log_every=1 train.stop_grace_s=25)  # a cut run checkpoints
    asset_device=cuda
    ;;
  tiny)
    experiment=wan_tiny; steps=${STEPS:-2}; batch=2
    student=()
    run=(train.d_probe_every=0)
    asset_device=cpu
    ;;
  *) echo "usage: $0 real|tiny"; exit 2 ;;
esac
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 > "$work/gpu_util.csv" 2>&1 &
  smi=$!
fi

if [ ! -s "$work/assets.txt" ]; then  # written last: its presence means every file is there
  python3 - "$work/assets" "$size" "$asset_device" "${student[@]}" > "$work/assets.tmp" <<'PY' || exit 1
import sys
from afd_async.testing.wan_assets import write_wan_assets
print("\n".join(write_wan_assets(sys.argv[1], sys.argv[2], device=sys.argv[3], overrides=sys.argv[4:])))
PY
  mv "$work/assets.tmp" "$work/assets.txt"
fi
mapfile -t assets < "$work/assets.txt"
t_assets=$(date +%s)
echo "assets: $((t_assets - t_start)) s"

# leave 75 s of the call for a cut-off run: the stop (up to 30 s), the report (replaying the Redis AOF) and the archive
deadline=$((total - (t_assets - t_start) - 75))
timeout -s INT -k 30 "$deadline" python3 -m afd_async.cli run "experiment=$experiment" "${assets[@]}" "${student[@]}" \
  "${run[@]}" "train.steps=$steps" "train.output_dir=$work/run" > "$work/afd_run.log" 2>&1
rc=$?
t_run=$(date +%s)
echo "afd run: exit $rc after $((t_run - t_assets)) s (deadline $deadline s)"
[ -n "${smi:-}" ] && kill "$smi"

gpu=$(python3 -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")')
extra=$(printf '{"experiment": "%s", "gpu": "%s", "run_exit_code": %d, "assets_s": %d, "run_wall_s": %d}' \
  "$experiment" "$gpu" "$rc" "$((t_assets - t_start))" "$((t_run - t_assets))")
python3 benchmarks/wan_afd_report.py "$work/run" --out "$out/wan_1_3b_afd_run.json" --batch-size "$batch" \
  --extra "$extra"
tail -5 "$work/afd_run.log"
# the records, role logs and GPU trace as one archive (a call returns at most 8 files); no clips or weights
cp "$work/afd_run.log" "$work/gpu_util.csv" "$work/run/" 2> /dev/null
tar czf "$out/wan_afd_run_records.tgz" -C "$work" --exclude='*.safetensors' --exclude='*.mp4' --exclude='*.gif' \
  --exclude='redis' --exclude='checkpoints' --exclude='text_cache' run
ls -la "$out"
