"""Data-parallel learner scaling: learner steps/s on N ranks against 1 rank, same run, same global batch.

Each row runs `afd_async.train.replica_check` (the real student and D
updaters, DDP over torchrun) and reports the median step time after warm-up,
steps/s, the speed-up over the 1-rank row and the per-rank scaling efficiency
(speed-up ÷ N), plus the loss difference to the 1-rank run over the first
three steps and over all steps (the correctness side of the same measurement;
on GPUs non-deterministic kernels make runs drift apart slowly even at one rank,
so the first steps are the comparison that means something).

    python benchmarks/bench_ddp.py --ranks 1 2 --size small --steps 12          # CPU: gloo
    python benchmarks/bench_ddp.py --ranks 1 2 4 --size small --steps 30        # GPUs: NCCL, one GPU per rank

NVLink multicast stays off in every rank's environment (`parallel.dist.NO_MULTICAST_ENV`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from afd_async.parallel.dist import NO_MULTICAST_ENV  # noqa: E402


def run_ranks(n: int, out: Path, args: argparse.Namespace) -> dict:
    """`n` = 0: one torchrun rank with a process group and DDP; 1: the plain process; N: N ranks."""
    common = ["--ddp-one"] * (n == 0) + ["--out", str(out), "--steps", str(args.steps), "--batch", str(args.batch), "--size", args.size,
              "--backend", args.backend]
    torchrun = shutil.which("torchrun") or "torchrun"
    cmd = [torchrun, "--standalone", "--nproc-per-node", str(max(n, 1)), "-m", "afd_async.train.replica_check",
           *common]
    if n == 1:  # the plain single-process path (no process group): the reference
        cmd = [sys.executable, "-m", "afd_async.train.replica_check", *common]
    env = {**os.environ, **NO_MULTICAST_ENV, "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{n} ranks failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads((out / "result.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2],
                    help="rank counts; the first is the baseline; 0 = one rank under DDP (DDP's own cost)")
    ap.add_argument("--size", default="small")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3, help="steps left out of the timing")
    ap.add_argument("--batch", type=int, default=8, help="global batch (a multiple of every rank count)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="OMP threads per rank")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.ranks:
            res = run_ranks(n, Path(tmp) / f"r{n}", args)
            times = [r["seconds"] for r in res["log"][args.warmup:]]
            rows.append({"ranks": n, "backend": res["backend"], "device": res["device"],
                         "step_s": statistics.median(times), "losses": [r["student_loss"] for r in res["log"]]})
    base = rows[0]
    print(f"| ranks | backend | device | step s (median) | steps/s | speed-up | efficiency/rank "
          f"| rel loss diff vs {base['ranks']}: first 3 steps | all steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        speed = base["step_s"] / r["step_s"]
        r["speedup"], r["efficiency"] = speed, speed / (max(r["ranks"], 1) / max(base["ranks"], 1))
        rel = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(base["losses"], r["losses"])]
        r["rel_loss_diff_first3"], r["max_rel_loss_diff"] = max(rel[:3]), max(rel)
        print(f"| {r['ranks']} | {r['backend']} | {r['device']} | {r['step_s']:.4f} | {1 / r['step_s']:.2f} | "
              f"{speed:.2f}× | {r['efficiency']:.0%} | {max(rel[:3]):.1e} | {max(rel):.1e} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
