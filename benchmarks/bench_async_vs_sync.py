"""Async (`afd run`, k = 0, 1, 2, …) against the synchronous loop (`afd sync`), same configs, same machine, one run.

Prints learner-consumed pairs/s (wall clock of the whole command: start-up, D
warm-up and evaluations included, the same for every row), the ratio to sync,
and the eval physics error at the end (quality at equal learner steps).

    python benchmarks/bench_async_vs_sync.py                      # quick: 40 steps, batch 4
    python benchmarks/bench_async_vs_sync.py --steps 200 --batch 8 --ks 0 1 2 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: str, overrides: list[str], out: Path) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "afd_async.cli", cmd, *overrides, f"train.output_dir={out}"],
                          capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"afd {cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    summary["wall_s"] = wall
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--eval-prompts", type=int, default=8)
    ap.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    base = [f"train.steps={args.steps}", f"train.batch_size={args.batch}", f"algo.d_warmup_steps={args.warmup}",
            f"train.eval_prompts={args.eval_prompts}", "train.eval_every=0", "train.torch_threads=1"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sync = run("sync", base, Path(tmp) / "sync")
        rows.append(("sync", sync))
        for k in args.ks:
            rows.append((f"async k={k}", run("run", [*base, f"replay.staleness={k}"], Path(tmp) / f"k{k}")))
    pairs = args.steps * args.batch
    sync_rate = pairs / rows[0][1]["wall_s"]
    print(f"{'mode':>11} {'wall s':>8} {'pairs/s':>8} {'÷ sync':>7} {'eval err start':>15} {'eval err end':>13} {'D acc':>6}")
    for name, s in rows:
        rate = pairs / s["wall_s"]
        print(f"{name:>11} {s['wall_s']:8.1f} {rate:8.2f} {rate / sync_rate:7.2f} {s['start']['position_error']:15.4f} "
              f"{s['final']['position_error']:13.4f} {s['final_d_acc'] or float('nan'):6.2f}")


if __name__ == "__main__":
    main()
