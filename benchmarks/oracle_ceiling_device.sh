#!/usr/bin/env bash
# benchmarks/oracle_ceiling.py on a lent GPU machine (issue 15.4): the runs in parallel, one CPU thread each
# (the oracle's reward is scored on the CPU), their records packed into $OUT/oracle_ceiling_<tag>.tgz.
#
#   VARIANTS="oracle null negated" SEEDS="0 1 2" bash benchmarks/oracle_ceiling_device.sh
#
# Here: `tar xzf oracle_ceiling_<tag>.tgz`, then `python benchmarks/oracle_ceiling.py --report --work <dir> --tag h100`.
# The device has no network and no Hydra/PyAV: their wheels travel in .whl/ (bash benchmarks/device_wheels.sh, less
# the diffusers and peft wheels and redis-bin, which these runs do not use).
set -uo pipefail
out=${OUT:-outputs/oracle_ceiling_out}
work=${WORK:-outputs/oracle_ceiling_gpu}
tag=${TAG:-run}
mkdir -p "$out" "$work"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
read -r -a variants <<< "${VARIANTS:-oracle null negated}"
read -r -a seeds <<< "${SEEDS:-0 1}"
deadline=${DEADLINE_S:-480}
timeout $((deadline + 30)) python3 benchmarks/oracle_ceiling.py --device cuda --jobs "${JOBS:-15}" --work "$work" \
  --variants "${variants[@]}" --seeds "${seeds[@]}" --deadline-s "$deadline" 2>&1 | tee "$out/oracle_ceiling_$tag.log"
nvidia-smi --query-gpu=name,memory.used --format=csv >> "$out/oracle_ceiling_$tag.log" 2>&1
tar czf "$out/oracle_ceiling_$tag.tgz" -C "$work" $(cd "$work" && ls *.json)
ls -la "$out"
