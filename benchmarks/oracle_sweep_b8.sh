#!/usr/bin/env bash
# The oracle at the quality benchmark's GPU size, on CPU (issue 15): `afd sync experiment=quality_gpu algo=oracle`
# (100 steps x batch 8, K = 4 rollouts a prompt, D warm-up 8), 40 eval prompts scored at the start and the end only,
# seeds 0 and 1, each setting next to its "null" twin (algo.adv_clip=1e6: the advantage carries no signal), so
# oracle − null is what the true reward adds over the update's own drift at the same settings and seed. Every run
# starts from the shipped base; the seed only changes the prompt draws and the noise.
#
#   bash benchmarks/oracle_sweep_b8.sh [OUT_DIR]     # ~10.5 min a 100-step run on the shared 2-core box (1 thread)
#   ONLY="default lr3e-5" bash benchmarks/oracle_sweep_b8.sh    # only these settings
#   SEEDS="0" bash benchmarks/oracle_sweep_b8.sh                # only these seeds
#
# Idempotent: a run whose summary.json exists is not run again. Settings in order of priority.
# Results: benchmarks/results/oracle_sweep_cpu_b8.md.
set -uo pipefail
out=${1:-outputs/oracle_b8}
mkdir -p "$out"
common=(experiment=quality_gpu algo=oracle train.device=cpu train.eval_prompts=40 train.eval_every=1000
        train.d_probe_every=0)
show() {  # run dir, label
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:>22}  {d['start']['physics_score']:.3f} -> {d['final']['physics_score']:.3f} [{d['final']['physics_score_ci_low']:.3f}, {d['final']['physics_score_ci_high']:.3f}]  det {d['final']['detection_rate']:.2f}  {d['seconds']:.0f}s\")" "$1/summary.json" "$2"
}
one() {  # dir name, seed, overrides
  local name=$1 seed=$2; shift 2
  [ -f "$out/$name/summary.json" ] || afd sync "${common[@]}" train.seed="$seed" "$@" train.output_dir="$out/$name" \
    > "$out/$name.log" 2>&1
  [ -f "$out/$name/summary.json" ] && show "$out/$name" "$name" || echo "$name: failed, see $out/$name.log"
}
run() {  # setting name, then the overrides: the oracle and its null twin, for every seed
  local name=$1; shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  for s in ${SEEDS:-0 1}; do
    one "${name}_s$s" "$s" "$@"
    one "${name}_null_s$s" "$s" "$@" algo.adv_clip=1e6
  done
}
run default                                            # lr_student 1e-5, 100 steps
run s300 train.steps=300
run lr3e-5 algo.lr_student=3e-5
run b1 algo.beta=1.0
run sched algo.t_sampling=schedule
run bs16 train.batch_size=16                           # K stays 4: 4 prompts a step
