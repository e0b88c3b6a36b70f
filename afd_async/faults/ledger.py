"""The fault ledger: after a run, count what the faults cost (issue #8: each must be 0).

    counts = count_faults(redis, keys, planner, teacher_url=..., teacher_key=..., d_lag_groups=0)

Sources, and what each count means:

- **pairs produced**: entries ever added to the pair stream (`XINFO STREAM`
  entries-added; trimming does not lower it), re-rolls and retried writes included.
- **pairs trained** / **lost** / **trained twice**: from each learner's own record,
  the ledger in its newest checkpoint (`runtime.learner_state`): the groups its
  final state was trained on, in order (a step redone after a resume replaces
  the lost one, so this is the lineage of the weights). The plan says which
  groups each learner must train: the student learner every training group, the
  discriminator every group (warm-up included) except the last `d_lag_groups`,
  which it may legitimately not have reached when the student learner finishes
  (`replay.d_staleness`). *Lost*: rows of a planned group missing from the
  lineage. *Twice*: rows of a group present more than once in the lineage
  (i.e. they moved the weights twice) — the feeder's and the learner's dedupe
  already applied, so this is what got through. The lineage is read as a plain
  list, not through the learner's loader (which refuses duplicates), so a
  duplicate is counted, not hidden.
- **teacher jobs created** / **twice** / **orphaned**: from the local teacher
  server's job list (`GET /v1/admin/jobs`), which sees every create it accepted.
  *Twice*: more than one live job (not failed or cancelled: a failed render is
  legitimately retried as a new job) for one (model, prompt, seed).
  *Orphaned*: a live job whose content was never downloaded — paid for, never used.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import httpx
import redis

from afd_async.runtime.learner_state import learner_checkpoint_dir, read_ledger
from afd_async.runtime.context import make_planner
from afd_async.store.keys import RunKeys
from afd_async.train.objectives import get_objective
from afd_async.train.plan import Planner
LEARNERS = {"discriminator": "d-learner", "student": "student-learner"}  # learner -> role (checkpoint folder)
_DEAD = ("failed", "cancelled")


@dataclass
class FaultCounts:
    """What one run produced, trained, lost and paid for twice (see the module docstring)."""

    pairs_produced: int = 0
    pairs_trained: dict[str, int] = field(default_factory=dict)  # learner -> rows in its final lineage
    pairs_lost: dict[str, int] = field(default_factory=dict)
    pairs_trained_twice: dict[str, int] = field(default_factory=dict)
    pairs_dropped_stale: int = 0  # dropped by the feeder's staleness filter and re-rolled (by design, not lost)
    teacher_jobs: int = 0
    teacher_jobs_twice: int = 0
    teacher_jobs_orphaned: int = 0
    teacher_jobs_failed: int = 0
    detail: dict[str, Any] = field(default_factory=dict)  # which groups / prompts, for a failing assertion

    @property
    def lost(self) -> int:
        return sum(self.pairs_lost.values())

    @property
    def twice(self) -> int:
        return sum(self.pairs_trained_twice.values())

    def clean(self) -> bool:
        """Nothing lost, nothing trained twice, no teacher job created twice or orphaned."""
        return self.lost == 0 and self.twice == 0 and self.teacher_jobs_twice == 0 and self.teacher_jobs_orphaned == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lost": self.lost, "twice": self.twice, "clean": self.clean()}


def learner_lineage(cfg: Any, role: str) -> list[int]:
    """Groups in `role`'s newest checkpoint ledger, in training order ([] when it wrote none)."""
    ledger = read_ledger(learner_checkpoint_dir(cfg, role))
    return [] if ledger is None else [int(g) for g in ledger["trained"]]


def learner_counts(lineage: list[int], planned: list[int],
                   rows_of: dict[int, int]) -> tuple[int, int, int, dict[str, list[int]]]:
    """(trained rows, lost rows, twice rows, detail) of one learner's lineage against the groups it had to train."""
    per_group = collections.Counter(lineage)
    trained = sum(rows_of.get(g, 0) for g in lineage)
    lost_groups = [g for g in planned if per_group.get(g, 0) == 0]
    twice_groups = sorted(g for g, n in per_group.items() if n > 1)
    lost = sum(rows_of[g] for g in lost_groups)
    twice = sum((per_group[g] - 1) * rows_of.get(g, 0) for g in twice_groups)
    return trained, lost, twice, {"lost_groups": lost_groups, "twice_groups": twice_groups}


def teacher_job_counts(jobs: list[dict[str, Any]]) -> tuple[int, int, int, dict[str, Any]]:
    """(twice, orphaned, failed, detail) from the teacher server's job list."""
    live = [j for j in jobs if j["status"] not in _DEAD]
    per_request = collections.Counter((j.get("model", ""), j["prompt"], int(j["seed"])) for j in live)
    twice = {k: n for k, n in per_request.items() if n > 1}
    orphaned = [j for j in live if int(j.get("downloads", 0)) == 0]
    detail = {"twice": [f"{p[:40]!r} seed {s} x{n}" for (_, p, s), n in twice.items()],
              "orphaned": [f"{j['id']} {j['status']} {j['prompt'][:40]!r}" for j in orphaned]}
    return sum(n - 1 for n in twice.values()), len(orphaned), len(jobs) - len(live), detail


def fetch_teacher_jobs(teacher_url: str, teacher_key: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Every job of `teacher_key` at the local teacher server."""
    r = httpx.get(f"{teacher_url}/v1/admin/jobs", headers={"Authorization": f"Bearer {teacher_key}"}, timeout=timeout_s)
    r.raise_for_status()
    return list(r.json()["data"])


def count_faults(client: redis.Redis, keys: RunKeys, planner: Planner, lineages: dict[str, list[int]], *,
                 teacher_jobs: Optional[list[dict]] = None, d_lag_groups: int = 0) -> FaultCounts:
    """Count a finished run (see the module docstring).

    Args:
        lineages: learner ("discriminator", "student") -> groups its final state trained on (`learner_lineage`).
        teacher_jobs: `fetch_teacher_jobs(...)`; None skips the teacher counts.
        d_lag_groups: trailing groups the discriminator may not have reached when the run stopped.
    """
    rows_of = {n: len(planner.group(n).pairs) for n in range(planner.total_groups)}
    planned = {
        "student": list(range(planner.warmup_groups, planner.total_groups)),
        "discriminator": list(range(0, max(0, planner.total_groups - d_lag_groups))),
    }
    c = FaultCounts()
    try:
        c.pairs_produced = int(client.xinfo_stream(keys.pairs).get("entries-added", 0))
    except redis.ResponseError:  # no stream: nothing was produced
        c.pairs_produced = 0
    for learner in LEARNERS:
        trained, lost, twice, detail = learner_counts(lineages.get(learner, []), planned[learner], rows_of)
        c.pairs_trained[learner], c.pairs_lost[learner], c.pairs_trained_twice[learner] = trained, lost, twice
        c.detail[learner] = detail
    c.pairs_dropped_stale = int(client.hget(keys.status, "pairs_dropped_stale") or 0)
    if teacher_jobs is not None:
        c.teacher_jobs = len(teacher_jobs)
        c.teacher_jobs_twice, c.teacher_jobs_orphaned, c.teacher_jobs_failed, c.detail["teacher"] = \
            teacher_job_counts(teacher_jobs)
    return c


class FaultLedgerHook:
    """`afd run` hook: counts the run at its end (`launch.hooks`); the result is `self.counts`."""

    def __init__(self) -> None:
        self.counts: Optional[FaultCounts] = None

    def tick(self, run: Any) -> None:
        pass

    def finish(self, run: Any) -> None:
        cfg = run.cfg
        ratio = max(1, cfg.algo.d_steps_per_student_step)
        planner = make_planner(cfg)
        # a student that never waits for D (sft): D owes no group by the end
        waits = get_objective(cfg.algo.name).student_waits_for_d
        lag = -(-cfg.replay.d_staleness // ratio) if waits else planner.total_groups
        jobs = fetch_teacher_jobs(run.teacher_url, run.teacher_key.reveal())
        lineages = {learner: learner_lineage(cfg, role) for learner, role in LEARNERS.items()}
        self.counts = count_faults(run.redis, run.keys, planner, lineages, teacher_jobs=jobs, d_lag_groups=lag)
