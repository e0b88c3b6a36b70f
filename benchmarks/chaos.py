"""Chaos run: `afd run` while a random role (or the redis-server) is SIGKILLed every few seconds; then the counts.

    python benchmarks/chaos.py --minutes 3                  # kills every 10 s for 3 minutes, then the run finishes
    python benchmarks/chaos.py --minutes 1 --steps 120      # a short one
    python benchmarks/chaos.py --minutes 4 --every 12 --steps 80 --baseline   # and the fault-free run first

Prints the kills and restarts per target and the fault ledger (pairs produced,
trained, lost, trained twice; teacher jobs created, created twice, orphaned) as
a Markdown table, and writes it with the raw result to `<out>/chaos.json`.
Library code: `afd_async/faults/chaos.py`. Exit code 1 if anything was lost,
trained twice, created twice or orphaned.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path

from afd_async.faults.chaos import TARGETS, chaos_run, format_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0, help="how long to keep killing (0: no faults)")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between kills")
    ap.add_argument("--steps", type=int, default=200, help="student steps of the run (it must outlast --minutes)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the target choice")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated roles to kill, 'redis' included")
    ap.add_argument("--baseline", action="store_true", help="first run the same config without faults (wall ratio)")
    ap.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for the run")
    a = ap.parse_args(argv)
    # SIGTERM (and SIGINT, even when started in the background) stop the run cleanly: roles, then Redis
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    out = Path(a.out or tempfile.mkdtemp(prefix="afd-chaos-"))
    targets = [t for t in a.targets.split(",") if t]
    baseline = chaos_run(out / "baseline", minutes=0, every_s=a.every, steps=a.steps, seed=a.seed, extra=a.overrides,
                         targets=targets) if a.baseline else None
    result = chaos_run(out / "chaos" if a.baseline else out, minutes=a.minutes, every_s=a.every, steps=a.steps,
                       seed=a.seed, extra=a.overrides, targets=targets)
    table = format_table(result, baseline)
    print(f"chaos: kill every {a.every:g} s for {a.minutes:g} min, {a.steps} steps, seed {a.seed}, outputs in {out}")
    print(table)
    (out / "chaos.json").write_text(json.dumps({**result, "baseline": baseline, "table": table}, indent=2, default=str))
    return 0 if result["counts"]["clean"] and (baseline is None or baseline["counts"]["clean"]) else 1


if __name__ == "__main__":
    sys.exit(main())
