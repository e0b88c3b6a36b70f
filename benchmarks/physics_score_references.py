"""Does the primary physics score rank clips without (or with scrambled) motion below the teacher and the base student?

Issue 15: position error is won by clips without motion (discs held at the
true first-frame positions 0.276, the teacher's first frame frozen 0.280, the
pretrained student 0.376). This scores, on the quality benchmark's eval set
(`benchmarks/quality/scoring.py`: the first `--prompts` eval prompts, 4
ground-truth seeds, the student's fixed rollout noise) at 1x and 2x the trained
length, the rows

    teacher        a second set of teacher clips (unseen jitter seeds), as `score_teacher`
    base           the shipped pretrained student
    static         discs of each object held at the true first-frame positions
    frozen_frame   the teacher's frame 0 repeated
    shuffled       the teacher's frames in a seeded random order
    reversed       the teacher's clip played backwards

with the physics score (mean and 95 % bootstrap CI over prompts), detection
fraction, its parts and the position error, plus each row's paired difference
from base. Writes `benchmarks/results/physics_score_references.json`.

    python benchmarks/physics_score_references.py            # 40 prompts, ~1.5 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "quality"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from afd_async.config import load_config  # noqa: E402
from afd_async.eval.bootstrap import bootstrap_mean, paired_difference  # noqa: E402
from afd_async.eval.references import references  # noqa: E402
from afd_async.eval.scorecard import score_clips, summarise  # noqa: E402
from scoring import TEACHER_SEED_OFFSET, QualityScorer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "physics_score_references.json"
KEYS = ("physics_score", "detection_rate", "kinematic_acceleration_error", "kinematic_speed_error",
        "kinematic_shown_motion", "position_error")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=40, help="first N eval prompts")
    ap.add_argument("--experiment", default="quality_gpu", help="the Hydra overlay (student size, fps, length)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config([f"experiment={args.experiment}"])
    scorer = QualityScorer(cfg, eval_prompts=args.prompts, long_factor=2, gt_seeds=4)
    student = scorer.load_student(None)
    fps = cfg.student.fps
    out: dict[str, dict[str, dict[str, float]]] = {}
    for h in scorer.horizons:
        second = h.source.batch(scorer.prompts, [2 * TEACHER_SEED_OFFSET + i for i in range(len(scorer.prompts))])
        rows = {"teacher": second, "base": scorer.rollouts(student, h.num_frames),
                **references(h.teacher, h.truths, fps=fps, seed=0)}
        per: dict[str, np.ndarray] = {}
        out[h.name] = {}
        for name, videos in rows.items():
            scores = score_clips(videos, fps, h.truths)
            metrics, _ = summarise(scores)
            per[name] = np.array([s.physics_score for s in scores])
            ci = bootstrap_mean(per[name])
            out[h.name][name] = {k: metrics[k] for k in KEYS} | {"physics_score_lo": ci.lo, "physics_score_hi": ci.hi}
        for name in rows:
            d = paired_difference(per[name], per["base"])
            out[h.name][name] |= {"minus_base": d.mean, "minus_base_lo": d.lo, "minus_base_hi": d.hi}
    print(f"{'row':13s} {'h':3s} {'physics':>7s} {'95% CI':>15s} {'- base [95% CI]':>24s} {'detect':>6s} "
          f"{'accel':>6s} {'speed':>6s} {'shown':>6s} {'pos err':>7s}")
    for hn, rows_out in out.items():
        for name, m in rows_out.items():
            print(f"{name:13s} {hn:3s} {m['physics_score']:7.3f} [{m['physics_score_lo']:6.3f},{m['physics_score_hi']:6.3f}] "
                  f"{m['minus_base']:+7.3f} [{m['minus_base_lo']:+6.3f},{m['minus_base_hi']:+6.3f}] "
                  f"{m['detection_rate']:6.3f} {m['kinematic_acceleration_error']:6.3f} {m['kinematic_speed_error']:6.3f} "
                  f"{m['kinematic_shown_motion']:6.3f} {m['position_error']:7.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"prompts": args.prompts, "experiment": args.experiment, "rows": out}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
