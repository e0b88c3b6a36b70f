#!/usr/bin/env bash
# The quality benchmark's GPU size on a lent GPU machine, a few seeds per call (issue 15).
#
#   bash benchmarks/quality_device.sh 0 1      # on the device: train + score seeds 0 and 1, pack into $OUT
#   bash benchmarks/quality_device.sh 2 3
#
# A lent machine is handed back 30 s after a call and a call lasts at most 10 minutes, so each call
# trains its seeds (every trained row, plus the D-ablation variant of AFD), scores them there (the
# per-run score caches of benchmarks/quality.py), and packs the run folders WITHOUT checkpoints
# into $OUT/runs_<seeds>.tgz. Here, unpack every call's archive into one work folder and run
#   python benchmarks/quality.py --size gpu --work <folder> --score-only --override text.cache_dir=...
# which scores base and the reference rows and reads the trained rows from their caches.
#
# The device has no network and no Hydra/PyAV/tenacity: their wheels travel in .whl/ (device README),
# and the MiniLM embeddings of every prompt in outputs/quality_text_cache (no sentence-encoder download).
set -uo pipefail
seeds=("$@")
tag=$(IFS=_; echo "${seeds[*]}")
out=${OUT:-outputs/quality_device_out}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
common=(--size gpu --seeds "${seeds[@]}" --override text.cache_dir=outputs/quality_text_cache --override train.device=cuda)
# D that should see physics: temporal negatives in its BT loss and the order-reading, prompt-before-pooling head
physd=(--override algo.d_temporal_negatives=true --override discriminator.temporal_head=true)
t0=$(date +%s)
python3 benchmarks/quality.py "${common[@]}" --work outputs/qg --train-only --jobs 10 > "$out/train_$tag.log" 2>&1 &
main=$!
python3 benchmarks/quality.py "${common[@]}" "${physd[@]}" --work outputs/qg_physd --train-only --rows AFD --jobs 2 \
  > "$out/train_physd_$tag.log" 2>&1
wait $main
t1=$(date +%s)
echo "training: $((t1 - t0)) s"
pack() { tar czf "$out/runs_$tag.tgz" --exclude='*.safetensors' --exclude='*.mp4' --exclude='*.gif' outputs/qg outputs/qg_physd; }
pack  # the run folders come back even if scoring runs out of time
python3 benchmarks/quality.py "${common[@]}" --work outputs/qg --score-only --results outputs/qg_results \
  > "$out/score_$tag.log" 2>&1 &
main=$!
python3 benchmarks/quality.py "${common[@]}" "${physd[@]}" --work outputs/qg_physd --score-only --rows AFD --tag physd \
  --results outputs/qg_results > "$out/score_physd_$tag.log" 2>&1
wait $main
echo "scoring: $(($(date +%s) - t1)) s"
pack  # again, now with each run's score cache
tar czf "$out/results_$tag.tgz" outputs/qg_results
ls -la "$out"
tail -3 "$out"/*.log
