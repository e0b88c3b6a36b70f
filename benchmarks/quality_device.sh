#!/usr/bin/env bash
# The quality benchmark's GPU size on a lent GPU machine, a few seeds per call (issue 15).
#
#   bash benchmarks/quality_device.sh 0 1      # on the device: train + score seeds 0 and 1, pack into $OUT
#   bash benchmarks/quality_device.sh 2 3
#   MAIN=0 VARIANT_TAG=pretrained_d VARIANT="discriminator.checkpoint=pretrained_d ..." \
#     bash benchmarks/quality_device.sh 0 1 2 3 4 5   # only the AFD variant, six seeds
#
# Since the overlay moved to batch 16, K = 8 (2026-12-07) a run does twice the student work of the K = 4 runs this
# script was timed on (~175 s of training for two seeds): expect ~350 s, and pass one seed a call if the deadline
# below cuts runs short.
# A lent machine is handed back 30 s after a call and a call lasts at most 10 minutes, so each call
# trains its seeds (every trained row, plus the D-ablation variant of AFD), scores them there (the
# per-run score caches of benchmarks/quality.py) or packs them with their EMA checkpoints into
# $OUT/runs_<seeds>.tar.part*. Here, `cat runs_*.tar.part* | tar xf -` for every call, then run
#   python benchmarks/quality.py --size gpu --work <folder> --score-only
# which scores base and the reference rows and reads the trained rows from their caches.
#
# The device has no network and no Hydra/PyAV/tenacity: their wheels travel in .whl/ (bash benchmarks/device_wheels.sh;
# leave out the diffusers and peft wheels, which these runs do not use: the tree and all of .whl pass the 64 MiB a
# call carries). The prompts are embedded by the bag of words (`text.kind=hash`, the default): no encoder download.
# The device copies the working tree as it is; when others edit it, run from a committed snapshot instead:
#   git archive HEAD -- . ':!benchmarks/results' > outputs/snap.tar     # here; carry it with .whl
#   mkdir /tmp/s && tar xf outputs/snap.tar -C /tmp/s && cp -r .whl /tmp/s/ && cd /tmp/s \
#     && bash benchmarks/quality_device.sh 0 1
set -uo pipefail
seeds=("$@")
tag=$(IFS=_; echo "${seeds[*]}")
out=${OUT:-outputs/quality_device_out}
mkdir -p "$out"
# A warm machine keeps the last call's run folders; packed again beside this call's they overflow the 64 MiB return
rm -rf outputs/qg outputs/qg_* outputs/qg_results
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
common=(--size gpu --seeds "${seeds[@]}" --override train.device=cuda)
# The AFD variant trained beside the main rows (VARIANT: its overrides; default: the D that should see physics,
# temporal negatives in its BT loss and the order-reading, prompt-before-pooling head; VARIANT_ROWS: its rows, default
# AFD). MAIN=0: the variant alone.
vtag=${VARIANT_TAG:-physd}
read -r -a vlist <<< "${VARIANT:-algo.d_temporal_negatives=true discriminator.temporal_head=true}"
physd=()
for o in "${vlist[@]}"; do physd+=(--override "$o"); done
# Training stops at TRAIN_DEADLINE_S (default 400 s) so what finished is still packed inside the call's limit.
deadline=${TRAIN_DEADLINE_S:-400}
t0=$(date +%s)
main=
if [ "${MAIN:-1}" != 0 ]; then
  timeout "$deadline" python3 benchmarks/quality.py "${common[@]}" --work outputs/qg --train-only --jobs 10 \
    > "$out/train_$tag.log" 2>&1 &
  main=$!
fi
timeout "$deadline" python3 benchmarks/quality.py "${common[@]}" "${physd[@]}" --work "outputs/qg_$vtag" --train-only \
  --rows ${VARIANT_ROWS:-AFD} --jobs $(( ${#seeds[@]} * $(wc -w <<< "${VARIANT_ROWS:-AFD}") )) > "$out/train_${vtag}_$tag.log" 2>&1
[ -n "$main" ] && wait "$main"
nvidia-smi --query-gpu=name,memory.used --format=csv > "$out/gpu.txt" 2>&1
t1=$(date +%s)
echo "training: $((t1 - t0)) s"
# The main rows come back with their EMA checkpoints (5.5 MB each; the return limit is 64 MiB in at most 8
# files of 16 MiB, so 10 runs per call fit) and are scored at home with every seed together; the D-ablation
# variant is scored here (AFD row only) and comes back as its result files.
# MAIN=0: the variant's runs come back instead (with their EMA checkpoints: 6 runs fit).
tar cf - --exclude='student_final.safetensors' --exclude='discriminator_final.safetensors' --exclude='*.mp4' \
  --exclude='*.gif' "$([ "${MAIN:-1}" != 0 ] && echo outputs/qg || echo "outputs/qg_$vtag")" \
  | split -b 15m - "$out/runs_$tag.tar.part"
timeout "${SCORE_DEADLINE_S:-90}" python3 benchmarks/quality.py "${common[@]}" "${physd[@]}" --work "outputs/qg_$vtag" \
  --score-only --rows ${VARIANT_ROWS:-AFD} --tag "$vtag" --results outputs/qg_results > "$out/score_${vtag}_$tag.log" 2>&1
echo "scoring the variant: $(($(date +%s) - t1)) s"
tar czf "$out/${vtag}_$tag.tgz" --exclude='*.safetensors' --exclude='*.mp4' --exclude='*.gif' "outputs/qg_$vtag" \
  outputs/qg_results
for f in "$out"/*.log; do tail -n 3 "$f"; done
# At most 8 files come back from a call: the logs travel as one archive beside the run parts.
tar czf "$out/logs_$tag.tgz" -C "$out" $(cd "$out" && ls *.log gpu.txt) && (cd "$out" && rm -f *.log gpu.txt)
ls -la "$out"
