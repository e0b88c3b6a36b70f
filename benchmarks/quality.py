"""Distillation quality benchmark (issues 7, 15): does AFD teach the student motion that SFT, GAN and frozen-D do not?

    python benchmarks/quality.py --size smoke --rows AFD SFT GAN frozen-D   # wiring check, minutes on 2 cores
    python benchmarks/quality.py --size cpu                                 # 2 seeds x 5 `afd run` trainings

The GPU size (4 seeds x 5 trainings, 40 prompts) does not fit one 10-minute
command of the lent machine: train in halves into one work folder, then score
every run folder together (W in an ignored path, e.g. outputs/quality_gpu, so
it stays on the warm machine between calls; no git there, hence `--commit`):

    python benchmarks/quality.py --size gpu --work W --train-only --seeds 0 1
    python benchmarks/quality.py --size gpu --work W --train-only --seeds 2 3
    python benchmarks/quality.py --size gpu --work W --score-only --commit <sha>

`--score-only` caches each trained run's scores in its folder
(`benchmarks/quality/cells.py`), so a folder carried to a fresh machine
without its checkpoints still scores; `--rescore` ignores the caches.

Rows (`benchmarks/quality/plan.py`), in table order: `teacher` (teacher clips of
unseen jitter seeds: the floor), `base` (the shipped pretrained student,
untrained), `AFD`, `SFT`, `GAN`, `frozen-D`, `oracle` (`algo=afd|sft|gan|frozen_d|oracle`,
the last with the ground-truth physics reward as its advantage: the ceiling),
and four rows with the right pictures but no or scrambled motion
(`afd_async.eval.references`): `static`, `frozen-frame`, `shuffled`, `reversed`.
Every trained row composes the same overlay (`configs/experiment/quality_<size>.yaml`,
same steps, batch, D warm-up, hence the same teacher-query budget) with the same
seeds and changes only `algo`.

Scoring (`benchmarks/quality/scoring.py`) uses the policy the run's own
evaluation rolls out (`--policy ema`, the default: `student_ema.safetensors`;
`old`: θ_old, `student_final.safetensors`). Every row is scored on the same
eval prompts once per seed, at the trained length and at 2x it, giving
(seed, prompt) cells of the primary score `physics_score` (relative velocity
error; no motion = 1 exactly, lower is better; `afd_async.eval.scorecard`).
Each row's mean has a 95 % bootstrap CI, and AFD is compared with every other
row by a paired bootstrap over the cells (`afd_async.eval.bootstrap`). Because
the untrained base already scores worse than no motion, the goal checks ask
AFD to beat base *and* static, SFT, GAN and frozen-D with CIs excluding zero,
to recover >= 60 % of the oracle's gain over base, and to move at the
teacher's speed (within 10 %). `probes` are the discriminator probes the AFD
runs logged last (`d_probe_*` in metrics.jsonl, mean over seeds; null if not logged).

Writes `benchmarks/results/quality_<size>[_tag].json` (`commit`, `size`,
`device`, `seeds`, `prompts`, `lengths.{1x,2x}.{rows,paired}`, `probes`, and
commands, curves, goals), `.md` (the tables and goal checks),
`_curves.png` and `_grid.{mp4,gif,png}` (teacher | base | AFD | SFT | oracle).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "quality"))

import torch  # noqa: E402

from afd_async.config import load_config  # noqa: E402
from cells import score_all  # noqa: E402
from plan import SIZES, Plan  # noqa: E402
from report import write_results  # noqa: E402
from runs import RunResult, load_run, train  # noqa: E402
from scoring import QualityScorer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def commit_id(flag: str | None) -> str:
    """`--commit`, else `$AFD_COMMIT`, else `git rev-parse HEAD` (the lent machine's copy has no .git), else `unknown`."""
    if flag or os.environ.get("AFD_COMMIT"):
        return str(flag or os.environ["AFD_COMMIT"])
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def check_rows(plan: Plan) -> None:
    """Compose every trained row's config before training anything, so a missing algo fails in seconds, not later."""
    for row in plan.rows:
        if not row.trained:
            continue
        try:
            load_config([f"experiment={plan.experiment}", *row.overrides(), *plan.extra])
        except Exception as err:  # noqa: BLE001 - Hydra raises several types; all mean the same thing here
            others = " ".join(r.name for r in plan.rows if r.trained and r.name != row.name)
            sys.exit(f"row {row.name} ({' '.join(row.overrides())}) does not compose: {str(err).splitlines()[0]}\n"
                     f"skip it with --rows {others}")


def train_all(plan: Plan, work: Path, tag: str) -> list[RunResult]:
    """Every trained row x seed, `plan.jobs` at a time; each leaves its folder in `work`."""
    jobs = [(row, seed) for seed in plan.seeds for row in plan.rows if row.trained]
    runs = []
    with ThreadPoolExecutor(max_workers=plan.jobs) as pool:
        for res in pool.map(lambda rs: train(plan, rs[0], rs[1], work), jobs):
            final = res.summary.get("final", {})
            status = res.error or ", ".join(f"{k} {v:.4f}" for k, v in final.items()
                                            if k in ("physics_score", "position_error") and isinstance(v, float))
            print(f"[quality {tag}] {res.row.name:>9} seed {res.seed}: {res.wall_s:6.1f}s  {status}", flush=True)
            runs.append(res)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    ap.add_argument("--seeds", type=int, nargs="*", help="override the plan's seeds (train or score only these)")
    ap.add_argument("--jobs", type=int, help="training processes at once (default: the plan's)")
    ap.add_argument("--work", type=Path, help="where run folders go (default: a temporary folder; "
                                              "required with --train-only / --score-only)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON, tables and pictures go")
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override for every row")
    ap.add_argument("--rows", nargs="*", help="only these trained rows (names as in the table; base, teacher and the reference rows always)")
    ap.add_argument("--tag", default="", help="suffix of the result file names, e.g. for a hyper-parameter variant")
    ap.add_argument("--policy", choices=("ema", "old"), default="ema",
                    help="saved policy to score: ema (what the runs evaluate, default) or old (θ_old)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--train-only", action="store_true", help="train and leave the run folders in --work")
    mode.add_argument("--score-only", action="store_true", help="score the run folders already in --work")
    ap.add_argument("--rescore", action="store_true",
                    help="ignore the runs' cached scores (benchmarks/quality/cells.py), e.g. after an evaluator change")
    ap.add_argument("--commit", help="commit to record where git is absent (default: $AFD_COMMIT or git rev-parse HEAD)")
    args = ap.parse_args()
    if (args.train_only or args.score_only) and args.work is None:
        ap.error("--train-only and --score-only need --work (the run folders outlive this command)")
    plan: Plan = SIZES[args.size]
    plan = replace(plan, seeds=tuple(args.seeds) if args.seeds else plan.seeds, jobs=args.jobs or plan.jobs,
                   extra=(*plan.extra, *args.override))
    try:
        plan = plan.only(args.rows) if args.rows else plan
    except ValueError as err:
        ap.error(str(err))
    t_start = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix=f"afd_quality_{args.size}_"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config([f"experiment={plan.experiment}", *plan.extra])
    print(f"[quality {args.size}] rows {[r.name for r in plan.rows]} x seeds {list(plan.seeds)}, overlay "
          f"{plan.experiment}, {cfg.train.steps} steps x batch {cfg.train.batch_size}, D warm-up "
          f"{cfg.algo.d_warmup_steps}; work dir {work}", flush=True)

    if args.score_only:
        runs = [load_run(plan, row, seed, work) for seed in plan.seeds for row in plan.rows if row.trained]
    else:
        check_rows(plan)
        torch.set_num_threads(1)
        runs = train_all(plan, work, args.size)
    t_train = time.monotonic() - t_start
    if args.train_only:
        failed = [f"{r.row.name} seed {r.seed}: {r.error}" for r in runs if r.error]
        print(f"[quality {args.size}] trained {len(runs) - len(failed)}/{len(runs)} in {t_train:.0f} s; "
              f"score with --score-only --work {work}" + ("".join(f"\n  FAILED {f}" for f in failed)))
        return

    torch.set_num_threads(max(1, min(os.cpu_count() or 1, plan.jobs)))
    scorer = QualityScorer(cfg, eval_prompts=plan.eval_prompts, long_factor=plan.long_factor, gt_seeds=plan.gt_seeds)
    cells, frechet, clips, errors = score_all(plan, scorer, {(r.row.name, r.seed): r for r in runs}, args.policy,
                                           use_cache=not args.rescore)
    write_results(args=args, plan=plan, cfg=cfg, scorer=scorer, runs=runs, cells=cells, frechet=frechet,
                  clips=clips, errors=errors, commit=commit_id(args.commit),
                  wall={"wall_s": round(time.monotonic() - t_start, 1), "train_wall_s": round(t_train, 1)})


if __name__ == "__main__":
    main()
