"""Distillation quality benchmark (issue 7): does AFD beat SFT, GAN-style and frozen-D, and by how much?

    python benchmarks/quality.py --size cpu     # the whole table on a 2-core CPU box (<= 30 min)
    python benchmarks/quality.py --size gpu     # more seeds, steps and eval prompts (the lent GPU machine)

Every row starts from the shipped pretrained tiny student, composes the same
overlay (`configs/experiment/quality_<size>.yaml`: same steps, batch, D
warm-up, hence the same teacher-query budget) with the same seeds, and changes
only `algo` and the staleness bound (rows: `benchmarks/quality/plan.py`). Each
trained student (`student_final.safetensors`, the θ_old the system publishes)
is then scored on the eval split with fixed rollout noise, at the trained
length and at 2x it (`afd_async.eval.scorecard`): position error against the
prompt's ground truth, the law-specific errors, motion relative to the
teacher, flicker and an FVD-style distance on a fixed random network. The
teacher's own clips go through the same scorecard as the floor.

Writes `benchmarks/results/quality_<size>.json`, `quality_<size>.md` (the
table), `quality_<size>_curves.png` and `quality_<size>_grid.{mp4,gif,png}`
(teacher | base | AFD | SFT), and prints the table and the goal checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "quality"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from afd_async.config import load_config  # noqa: E402
from artefacts import COLUMNS, format_table, plot_curves, summarise, write_clip_grid  # noqa: E402
from plan import SIZES, Plan  # noqa: E402
from runs import RunResult, train  # noqa: E402
from scoring import QualityScorer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GRID_PROMPTS = 4


def goal_checks(summary: dict[str, dict[str, dict[str, tuple[float, float]]]], long_name: str) -> list[str]:
    """The issue's goals, each as a PASS / FAIL line with the numbers."""
    lines = []

    def mean(row: str, h: str, key: str) -> float:
        return summary.get(row, {}).get(h, {}).get(key, (float("nan"), 0.0))[0]

    base, afd = mean("base", "1x", "position_error"), mean("AFD", "1x", "position_error")
    gain = 1.0 - afd / base if base else float("nan")
    lines.append(f"{'PASS' if gain >= 0.30 else 'FAIL'}  AFD position error {afd:.4f} is {gain:+.0%} below base {base:.4f} (goal >= 30%)")
    for h in ("1x", long_name):
        a = mean("AFD", h, "position_error")
        for other in ("SFT", "GAN", "frozen-D"):
            o = mean(other, h, "position_error")
            if np.isfinite(o):
                lines.append(f"{'PASS' if a < o else 'FAIL'}  [{h}] AFD {a:.4f} < {other} {o:.4f}")
    ratio = mean("AFD", "1x", "motion_ratio")
    lines.append(f"{'PASS' if abs(ratio - 1) <= 0.10 else 'FAIL'}  AFD motion magnitude {ratio:.2f}x the teacher's (goal within 10%)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    ap.add_argument("--seeds", type=int, nargs="*", help="override the plan's seeds")
    ap.add_argument("--jobs", type=int, help="training processes at once (default: the plan's)")
    ap.add_argument("--work", type=Path, help="where run folders go (default: a temporary folder)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON, table and pictures go")
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override for every row")
    ap.add_argument("--rows", nargs="*", help="only these rows (names as in the table; base is always scored)")
    ap.add_argument("--tag", default="", help="suffix of the result file names, e.g. for a hyper-parameter variant")
    args = ap.parse_args()
    plan: Plan = SIZES[args.size]
    plan = replace(plan, seeds=tuple(args.seeds) if args.seeds else plan.seeds, jobs=args.jobs or plan.jobs,
                   extra=(*plan.extra, *args.override),
                   rows=tuple(r for r in plan.rows if not args.rows or r.name in args.rows or r.mode == "base"))
    t_start = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix=f"afd_quality_{args.size}_"))
    work.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(4, plan.jobs)))
    cfg = load_config([f"experiment={plan.experiment}", *plan.extra])
    print(f"[quality {args.size}] plan: {len(plan.rows)} rows x seeds {list(plan.seeds)}, overlay {plan.experiment}, "
          f"{cfg.train.steps} steps x batch {cfg.train.batch_size}, D warm-up {cfg.algo.d_warmup_steps}; "
          f"teacher budget {(cfg.algo.d_warmup_steps + cfg.train.steps) * cfg.train.batch_size} clips per run; "
          f"work dir {work}", flush=True)

    jobs = [(row, seed) for seed in plan.seeds for row in plan.rows if row.mode != "base"]
    runs: list[RunResult] = []
    with ThreadPoolExecutor(max_workers=plan.jobs) as pool:
        for res in pool.map(lambda rs: train(plan, rs[0], rs[1], work), jobs):
            status = res.error or f"eval err {res.summary.get('start', {}).get('position_error', float('nan')):.4f} -> " \
                                  f"{res.summary.get('final', {}).get('position_error', float('nan')):.4f}"
            print(f"[quality {args.size}] {res.row.name:>9} seed {res.seed}: {res.wall_s:6.1f}s  {status}", flush=True)
            runs.append(res)
    t_train = time.monotonic() - t_start

    scorer = QualityScorer(cfg, eval_prompts=plan.eval_prompts, long_factor=plan.long_factor, gt_seeds=plan.gt_seeds)
    long_name = f"{plan.long_factor}x"
    per_row: dict[str, list[dict[str, Any]]] = {}
    keep: dict[str, dict[str, torch.Tensor]] = {}
    base_metrics, base_videos = scorer.score(scorer.load_student(None))
    for row in plan.rows:
        if row.mode == "base":
            per_row[row.name] = [base_metrics]  # no training: one student, the same for every seed
            keep[row.name] = base_videos
    for res in runs:
        if res.error:
            continue
        metrics, videos = scorer.score(scorer.load_student(res.checkpoint))
        per_row.setdefault(res.row.name, []).append({**metrics, "seed": res.seed, "wall_s": round(res.wall_s, 1),
                                                     "final_d_acc": res.summary.get("final_d_acc")})
        if res.seed == plan.seeds[0]:
            keep[res.row.name] = videos
    teacher = scorer.score_teacher()

    keys = [k for k, _, _ in COLUMNS] + ["position_error_early", "detection_rate", "speed_ratio",
                                          "bounce_count_error", "collision_velocity_error", "object_speed",
                                          "motion_magnitude"]
    summary = {name: {h: summarise([m[h] for m in ms], keys) for h in ("1x", long_name)} for name, ms in per_row.items()}
    teacher_summary = {h: {k: (v, 0.0) for k, v in teacher[h].items() if k != "curve" and not k.startswith("n_")}
                       for h in ("1x", long_name)}

    fps = cfg.student.fps
    stem = f"quality_{args.size}{'_' + args.tag if args.tag else ''}"
    tables = {}
    for h in ("1x", long_name):
        rows = [(name, summary[name][h]) for name in per_row] + [("teacher", teacher_summary[h])]
        tables[h] = (format_table(rows), format_table(rows, markdown=True))
    curves = {r.row.name: [] for r in runs}
    for r in runs:
        curves[r.row.name].append(r.eval_curve)
    drift = {name: np.mean([m[long_name]["curve"] for m in ms], axis=0) for name, ms in per_row.items()}
    plot_curves(curves, drift, teacher[long_name]["curve"], fps, cfg.student.num_frames, args.results / f"{stem}_curves.png")
    grid_cols = [scorer.horizons[0].teacher[:GRID_PROMPTS]] + [keep[n]["1x"][:GRID_PROMPTS] for n in ("base", "AFD", "SFT") if n in keep]
    grid_names = ["teacher"] + [n for n in ("base", "AFD", "SFT") if n in keep]
    write_clip_grid(grid_cols, grid_names, fps, args.results / f"{stem}_grid")
    long_cols = [scorer.horizons[1].teacher[:GRID_PROMPTS]] + [keep[n][long_name][:GRID_PROMPTS] for n in grid_names[1:]]
    write_clip_grid(long_cols, grid_names, fps, work / f"{stem}_grid_long", frames_in_strip=10)
    (args.results / f"{stem}_grid_long.png").write_bytes((work / f"{stem}_grid_long.png").read_bytes())

    goals = goal_checks(summary, long_name)
    wall = time.monotonic() - t_start
    result = {
        "size": args.size, "tag": args.tag, "overrides": list(args.override), "wall_s": round(wall, 1), "train_wall_s": round(t_train, 1),
        "overlay": plan.experiment, "seeds": list(plan.seeds), "eval_prompts": scorer.prompts,
        "teacher_budget_clips_per_run": (cfg.algo.d_warmup_steps + cfg.train.steps) * cfg.train.batch_size,
        "commands": {f"{r.row.name} seed {r.seed}": r.command for r in runs},
        "errors": {f"{r.row.name} seed {r.seed}": r.error for r in runs if r.error},
        "summary": summary, "teacher": teacher, "per_seed": per_row,
        "learning_curves": {k: v for k, v in curves.items()}, "goals": goals,
        "grid_prompts": scorer.prompts[:GRID_PROMPTS], "grid_columns": grid_names,
    }
    (args.results / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float))
    flags = "".join(f" --override {o}" for o in args.override) + (f" --tag {args.tag}" if args.tag else "")
    md = [f"# Quality benchmark, size {args.size}{' (' + args.tag + ')' if args.tag else ''}", "",
          f"`python benchmarks/quality.py --size {args.size}{flags}` — {wall:.0f} s wall ({t_train:.0f} s training), "
          f"seeds {list(plan.seeds)}, mean ± sd over seeds.", ""]
    for h in ("1x", long_name):
        md += [f"## Rollouts {h} the trained length", "", tables[h][1], ""]
    md += ["## Goals", "", *[f"- {g}" for g in goals], ""]
    (args.results / f"{stem}.md").write_text("\n".join(md))
    for h in ("1x", long_name):
        print(f"\n== rollouts {h} the trained length (mean ± sd over seeds {list(plan.seeds)}) ==\n{tables[h][0]}")
    print("\n" + "\n".join(goals))
    if result["errors"]:
        print(f"\nFAILED RUNS: {result['errors']}")
    print(f"\n[quality {args.size}] total wall {wall:.0f} s (training {t_train:.0f} s); results in {args.results}")


if __name__ == "__main__":
    main()
