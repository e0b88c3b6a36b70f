#!/usr/bin/env bash
# The oracle's ceiling on CPU (issue 15): `afd sync algo=oracle` at the quality benchmark's CPU size, one seed,
# 40 eval prompts scored at the start and the end only, over the update's knobs, each next to a "null" twin
# whose advantage carries no signal (algo.adv_clip=1e6: every weight w = 0.5 + 0.5·A/a ≈ 0.5), so the
# difference oracle − null is what the true reward adds over the update's own drift at the same settings.
#
#   bash benchmarks/oracle_sweep.sh [OUT_DIR]      # ~12 min on a free 2-core box; prints one line per run
#
# Results: benchmarks/results/oracle_sweep_cpu.md.
set -uo pipefail
out=${1:-outputs/oracle_sweep}
mkdir -p "$out"
common=(experiment=quality_cpu train.eval_prompts=40 train.eval_every=1000)
run() {  # name, then overrides of the oracle row (or of the row ALGO names)
  local name=$1; shift
  [ -f "$out/$name/summary.json" ] || afd sync "${common[@]}" "algo=${ALGO:-oracle}" "$@" train.output_dir="$out/$name" \
    > "$out/$name.log" 2>&1
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:>16}  {d['start']['physics_score']:.3f} -> {d['final']['physics_score']:.3f} [{d['final']['physics_score_ci_low']:.3f}, {d['final']['physics_score_ci_high']:.3f}]\")" "$out/$name/summary.json" "$name"
}
run k1 algo.rollouts_per_prompt=1
run k1_null algo.rollouts_per_prompt=1 algo.adv_clip=1e6
run k2 algo.rollouts_per_prompt=2
run k4 algo.rollouts_per_prompt=4
run k4_null algo.rollouts_per_prompt=4 algo.adv_clip=1e6
run k4_b1 algo.rollouts_per_prompt=4 algo.beta=1.0
run k4_sched algo.rollouts_per_prompt=4 algo.t_sampling=schedule
run k4_lr3e-5 algo.rollouts_per_prompt=4 algo.lr_student=3e-5
run k4_lr1e-4 algo.rollouts_per_prompt=4 algo.lr_student=1e-4
run k4_lr1e-4_null algo.rollouts_per_prompt=4 algo.lr_student=1e-4 algo.adv_clip=1e6
run k2_lr1e-4 algo.rollouts_per_prompt=2 algo.lr_student=1e-4
run k2_lr1e-4_null algo.rollouts_per_prompt=2 algo.lr_student=1e-4 algo.adv_clip=1e6
run k4_s100 algo.rollouts_per_prompt=4 train.steps=100
# longer runs, each next to its null twin (added 2026-12-07 with the new base, where K=4 x 100 steps moved first)
run k4_s100_null algo.rollouts_per_prompt=4 train.steps=100 algo.adv_clip=1e6
run k4_lr3e-5_s100 algo.rollouts_per_prompt=4 algo.lr_student=3e-5 train.steps=100
run k4_lr3e-5_s100_null algo.rollouts_per_prompt=4 algo.lr_student=3e-5 train.steps=100 algo.adv_clip=1e6
run k4_s300 algo.rollouts_per_prompt=4 train.steps=300
run k4_s300_null algo.rollouts_per_prompt=4 train.steps=300 algo.adv_clip=1e6
# AFD and frozen-D (D learnt, D frozen after warm-up) where the oracle moves: how much of the oracle's gain D gives
ALGO=afd run afd_k4_s100 algo.rollouts_per_prompt=4 train.steps=100
ALGO=frozen_d run frozen_d_k4_s100 algo.rollouts_per_prompt=4 train.steps=100
ALGO=afd run afd_k4_s300 algo.rollouts_per_prompt=4 train.steps=300
ALGO=frozen_d run frozen_d_k4_s300 algo.rollouts_per_prompt=4 train.steps=300
# the D that passes more probes (temporal negatives in its BT loss + the order-reading head) at the same settings
ALGO=afd run afd_physd_k4_s100 algo.rollouts_per_prompt=4 train.steps=100 algo.d_temporal_negatives=true discriminator.temporal_head=true
ALGO=afd run afd_physd_k4_s300 algo.rollouts_per_prompt=4 train.steps=300 algo.d_temporal_negatives=true discriminator.temporal_head=true
