"""Async (`afd run`, k = 0, 1, 2, …) against the synchronous loop (`afd sync`), same configs, same machine, one run.

Prints learner-consumed pairs/s (wall clock of the whole command: start-up, D
warm-up and evaluations included, the same for every row), the ratio to sync,
the eval physics error at the end (quality at equal learner steps), and each
learner's busy fraction once warm (`afd_*_learner_busy_ratio`: time in the
optimizer step ÷ wall time after the first batch; goal ≥ 0.95), then where the
student learner's warm wall time went (`runtime/busy.py` names the parts).

    python benchmarks/bench_async_vs_sync.py                      # quick: 40 steps, batch 4
    python benchmarks/bench_async_vs_sync.py --steps 200 --batch 8 --ks 0 1 2 4
    python benchmarks/bench_async_vs_sync.py --sync-threads 1 4 text.kind=hash   # more sync rows; extra overrides

The ratio column divides by the first sync row (one torch thread, like every async role).

`measure_learner_busy()` (for `benchmarks/plumbing.py`, or `--busy-only`) runs one async row alone and
returns the student learner's busy fraction once warm; `learner_busy()` adds where the rest went.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from role_cpu import RoleCpu  # noqa: E402  (a sibling: where the CPU went during a run)


def run(cmd: str, overrides: list[str], out: Path) -> dict:
    """`afd <cmd>` to `out`: its summary, the command's wall time and (`role_cpu`) where the CPU went."""
    t0 = time.monotonic()
    with subprocess.Popen([sys.executable, "-m", "afd_async.cli", cmd, *overrides, f"train.output_dir={out}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        with RoleCpu(proc.pid) as cpu:
            stdout, stderr = proc.communicate()
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"afd {cmd} failed:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    summary["wall_s"] = wall
    summary["role_cpu"] = cpu.summary()
    return summary


def learner_busy(k: int = 2, steps: int = 40, batch: int = 4, overrides: Sequence[str] = ("text.kind=hash",),
                 d_staleness: int = 0) -> dict[str, Any]:
    """One `afd run` at staleness `k` and D staleness `d_staleness` (tiny models, no evaluation rounds): the student
    learner's busy fraction once warm, its breakdown (`runtime/busy.py`), the D learner's, the wall time and where
    the CPU went (`cpu`: `role_cpu.py`). About a minute on 2 cores."""
    base = [f"train.steps={steps}", f"train.batch_size={batch}", "algo.d_warmup_steps=4", "train.eval_prompts=4",
            "train.eval_every=0", "train.torch_threads=1", f"replay.staleness={k}",
            f"replay.d_staleness={d_staleness}", *overrides]
    with tempfile.TemporaryDirectory() as tmp:
        s = run("run", base, Path(tmp) / f"k{k}")
    st = s.get("status", {})
    return {"k": k, "steps": steps, "batch": batch, "wall_s": s["wall_s"],
            "student_busy": float(st.get("student_busy_ratio", "nan")),
            "d_busy": float(st.get("d_busy_ratio", "nan")),
            "breakdown": json.loads(st.get("student_busy_breakdown", "{}")), "cpu": s.get("role_cpu", {})}


def measure_learner_busy(k: int = 2, steps: int = 40, batch: int = 4,
                         overrides: Sequence[str] = ("text.kind=hash",), d_staleness: int = 0) -> float:
    """The student learner's busy fraction once warm at staleness `k` (goal ≥ 0.95 at k ≥ 1)."""
    return learner_busy(k, steps, batch, overrides, d_staleness)["student_busy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--eval-prompts", type=int, default=8)
    ap.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sync-threads", type=int, nargs="+", default=[1],
                    help="one sync row per torch thread count (the first is the ratio's baseline)")
    ap.add_argument("--busy-only", action="store_true",
                    help="one async row per --ks value: the student learner's busy fraction and breakdown only")
    ap.add_argument("--d-staleness", type=int, default=0, help="replay.d_staleness (k_D) of the --busy-only rows")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every row")
    args = ap.parse_args()
    if args.busy_only:
        parts = ("step", "batch_wait", "d_fetch", "d_wait", "publish", "checkpoint", "other", "unaccounted")
        print(f"{'k':>3} {'wall s':>7} {'S busy':>7} {'D busy':>7} " + " ".join(f"{p:>11}" for p in parts))
        for k in args.ks:
            r = learner_busy(k, args.steps, args.batch, args.overrides or ("text.kind=hash",), args.d_staleness)
            print(f"{k:>3} {r['wall_s']:7.1f} {r['student_busy']:7.3f} {r['d_busy']:7.3f} "
                  + " ".join(f"{r['breakdown'].get(p, 0.0):11.3f}" for p in parts), flush=True)
        return
    base = [f"train.steps={args.steps}", f"train.batch_size={args.batch}", f"algo.d_warmup_steps={args.warmup}",
            f"train.eval_prompts={args.eval_prompts}", "train.eval_every=0", *args.overrides]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sync_threads:
            name = "sync" if n == 1 else f"sync {n}thr"
            rows.append((name, run("sync", [*base, f"train.torch_threads={n}"], Path(tmp) / f"sync{n}")))
        base.append("train.torch_threads=1")
        for k in args.ks:
            rows.append((f"async k={k}", run("run", [*base, f"replay.staleness={k}"], Path(tmp) / f"k{k}")))
    pairs = args.steps * args.batch
    sync_rate = pairs / rows[0][1]["wall_s"]
    print(f"{'mode':>11} {'wall s':>8} {'pairs/s':>8} {'÷ sync':>7} {'eval err start':>15} {'eval err end':>13} {'D acc':>6}"
          f" {'S busy':>7} {'D busy':>7}")
    for name, s in rows:
        rate = pairs / s["wall_s"]
        st = s.get("status", {})
        busy = [f"{float(st[k]):7.2f}" if k in st else f"{'—':>7}" for k in ("student_busy_ratio", "d_busy_ratio")]
        print(f"{name:>11} {s['wall_s']:8.1f} {rate:8.2f} {rate / sync_rate:7.2f} {s['start']['position_error']:15.4f} "
              f"{s['final']['position_error']:13.4f} {s['final_d_acc'] or float('nan'):6.2f} {busy[0]} {busy[1]}")
    parts = ("step", "batch_wait", "d_fetch", "d_wait", "publish", "checkpoint", "other", "unaccounted")
    print("\nstudent learner, fraction of warm wall time (async rows; D learner's busy in the table above)")
    print(f"{'mode':>11} " + " ".join(f"{p:>11}" for p in parts))
    for name, s in rows[len(args.sync_threads):]:
        b = json.loads(s.get("status", {}).get("student_busy_breakdown", "{}"))
        print(f"{name:>11} " + " ".join(f"{b.get(p, 0.0):11.3f}" for p in parts))


if __name__ == "__main__":
    main()
