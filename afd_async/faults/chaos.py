"""The chaos run: one `afd run` while a random role (or the redis-server) is SIGKILLed every few seconds.

    result = chaos_run(out_dir, minutes=3, every_s=10, steps=400, seed=0)
    print(format_table(result))

Kills start once the student learner has stepped (every role is up) and stop
after `minutes`; the run then goes on to its last step, and the fault ledger
(`ledger.count_faults`) counts what the kills cost. The local teacher server is
not a target: it stands in for the provider, whose jobs outlive our processes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

from afd_async.config import load_config
from afd_async.faults.inject import REDIS, Chaos, status_at_least
from afd_async.faults.ledger import FaultLedgerHook
from afd_async.launch.run import launch

TARGETS = ("teacher-actor", "student-actor", "feeder", "d-learner", "student-learner", REDIS)
# Smoke-size models, with the timeouts that decide how fast a dead role's work passes on cut to seconds.
CHAOS_OVERRIDES = [
    "experiment=smoke", "text.kind=hash", "train.eval_prompts=2",
    "replay.group_lease_s=4", "teacher.source.pop_timeout_s=0.5", "teacher.source.actor_ttl_s=2",
    "teacher.gateway.claim_ttl_s=2", "teacher.quota.lease_ttl_s=4",
    "cluster.max_restarts=50", "cluster.restart_backoff_s=0.2",
    "train.checkpoint_every=2",  # a killed learner redoes at most 2 steps
]


class TimedChaos(Chaos):
    """`Chaos` that stops injecting `duration_s` after its first kill window opened."""

    def __init__(self, targets: Sequence[str], *, every_s: float, duration_s: float, seed: int, after: Any) -> None:
        super().__init__(targets, every_s=every_s, seed=seed, after=after)
        self.duration_s = duration_s
        self.ended_at: Optional[float] = None

    def tick(self, run: Any) -> None:
        if self._t0 is not None and time.monotonic() - self._t0 > self.duration_s:
            self.ended_at = self.ended_at or time.monotonic() - self._t0
            return
        super().tick(run)


def chaos_run(out: Path, *, minutes: float, every_s: float, steps: int, seed: int = 0,
              extra: Sequence[str] = (), targets: Sequence[str] = TARGETS, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Run `afd run` under chaos; returns kills, restarts, the fault counts and wall times."""
    overrides = [*CHAOS_OVERRIDES, f"train.steps={steps}", f"train.output_dir={out}", *extra]
    chaos = TimedChaos(targets, every_s=every_s, duration_s=minutes * 60.0, seed=seed,
                       after=status_at_least("student_steps", 1))
    ledger = FaultLedgerHook()
    t0 = time.monotonic()
    summary = launch(load_config(overrides), overrides, show_progress=False, timeout_s=timeout_s, hooks=[chaos, ledger])
    wall = time.monotonic() - t0
    assert ledger.counts is not None
    return {"overrides": overrides, "kills": chaos.counts(), "kill_log": [(k.target, round(k.at_s, 1)) for k in chaos.kills],
            "restarts": summary.get("restarts", {}), "counts": ledger.counts.as_dict(), "steps": summary.get("steps"),
            "chaos_s": chaos.ended_at or (wall if chaos._t0 is not None else 0.0), "wall_s": wall,
            "every_s": every_s, "seed": seed}


def format_table(result: dict[str, Any], baseline: Optional[dict[str, Any]] = None) -> str:
    """Markdown: kills and restarts per target, then the counts (and the fault-free run's, when given)."""
    c = result["counts"]
    lines = ["| target | kills | restarts |", "|---|---:|---:|"]
    for t in result["kills"]:
        lines.append(f"| {t} | {result['kills'][t]} | {result['restarts'].get(t, 0)} |")
    lines.append(f"| **total** | {sum(result['kills'].values())} | "
                 f"{sum(result['restarts'].get(t, 0) for t in result['kills'])} |")
    rows = [
        ("student steps", result["steps"]),
        ("pairs produced (stream entries, re-rolls included)", c["pairs_produced"]),
        ("pairs trained: student learner / discriminator", f"{c['pairs_trained'].get('student', 0)} / "
                                                          f"{c['pairs_trained'].get('discriminator', 0)}"),
        ("pairs dropped stale (re-rolled by design)", c["pairs_dropped_stale"]),
        ("**pairs lost**", c["lost"]),
        ("**pairs trained twice**", c["twice"]),
        ("teacher jobs created", c["teacher_jobs"]),
        ("**teacher jobs created twice**", c["teacher_jobs_twice"]),
        ("**teacher jobs orphaned**", c["teacher_jobs_orphaned"]),
        ("chaos window / wall time", f"{result['chaos_s']:.0f} s / {result['wall_s']:.0f} s"),
    ]
    if baseline is not None:
        b = baseline["counts"]
        rows += [("same run without faults: wall time (chaos ÷ fault-free)",
                  f"{baseline['wall_s']:.0f} s ({result['wall_s'] / baseline['wall_s']:.2f}x)"),
                 ("same run without faults: pairs produced / teacher jobs / lost / twice",
                  f"{b['pairs_produced']} / {b['teacher_jobs']} / {b['lost']} / {b['twice']}")]
    lines += ["", "| count | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)
