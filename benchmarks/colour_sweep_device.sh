#!/usr/bin/env bash
# The colour fit of benchmarks/colour_overfit.py for several recipes at once on a lent GPU machine (issue 15):
# which conditioning path and loss let a fresh student paint the prompt's colour at t = 1, and how soon.
#
#   STEPS=3000 bash benchmarks/colour_sweep_device.sh    # on the device, carrying .whl; JSON + logs into $OUT
set -uo pipefail
out=${OUT:-outputs/colour_sweep}
steps=${STEPS:-3000}
mkdir -p "$out"
whl=${WHL:-.whl}
if [ -d "$whl" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$whl"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
tok=student.text_to_tokens=true
adaln=student.text_to_tokens=false  # the student before the token path (the default since 2026-12-07)
run() {  # name, then colour_overfit arguments
  local name=$1; shift
  python3 benchmarks/colour_overfit.py --device cuda --steps "$steps" --every 250 --json "$out/$name.json" "$@" \
    > "$out/$name.log" 2>&1 &
}
run adaln_v       --text-kind hash --set $adaln
run adaln_x0      --text-kind hash --loss x0 --set $adaln
run tokens_v      --text-kind hash --set $tok
run tokens_x0     --text-kind hash --loss x0 --set $tok
run words_v       --text-kind words --set $adaln
run words_tok_x0  --text-kind words --loss x0 --set $tok
run tokens_v_lr1e3 --text-kind hash --lr 1e-3 --set $tok
wait
for f in "$out"/*.log; do echo "== $f"; tail -n 10 "$f"; done
