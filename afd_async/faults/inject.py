"""Fault injectors: `afd run` hooks (`launch.hooks.RunHook`) that SIGKILL processes mid-run.

    KillWhen("feeder", when=pending_batches)           # once, the first tick the condition holds
    Chaos(targets, every_s=10, seed=0)                 # a random target every `every_s` seconds

Targets are role names (`launch.run.ROLE_ORDER`) or "redis" (the private
redis-server). A kill is SIGKILL to the role's process group: no handler runs,
nothing is flushed, exactly what an OOM kill or a lost host does. The launcher
restarts the process (`supervisor.RestartPolicy`); the run must finish anyway.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import httpx

from afd_async.launch.hooks import RunHandle

log = logging.getLogger(__name__)

REDIS = "redis"
Condition = Callable[[RunHandle], bool]


@dataclass
class Kill:
    """One injected fault."""

    target: str
    pid: int
    at_s: float  # seconds since the injector's first tick
    status: dict[str, str] = field(default_factory=dict)  # the run's status hash just before


def kill_target(run: RunHandle, target: str) -> int:
    """SIGKILL `target` (a role name or "redis"); returns the pid killed."""
    if target == REDIS:
        return run.redis_guard.kill()
    return run.supervisor.kill(target)


def target_running(run: RunHandle, target: str) -> bool:
    if target == REDIS:
        return run.redis_guard.alive
    return run.supervisor.role(target).running


class KillWhen:
    """Kill `target` once, at the first tick where `when(run)` holds (and the target is up)."""

    def __init__(self, target: str, when: Condition) -> None:
        self.target, self.when = target, when
        self.kills: list[Kill] = []
        self._t0: Optional[float] = None

    def tick(self, run: RunHandle) -> None:
        self._t0 = self._t0 or time.monotonic()
        if self.kills or not target_running(run, self.target) or not self.when(run):
            return
        status = run.status()
        pid = kill_target(run, self.target)
        self.kills.append(Kill(self.target, pid, time.monotonic() - self._t0, status))
        log.warning("fault injected: SIGKILL %s (pid %d) at student step %s", self.target, pid,
                    status.get("student_steps", 0))

    def finish(self, run: RunHandle) -> None:
        pass


class Chaos:
    """Kill a random running target every `every_s` seconds (seeded), after `after(run)` first holds.

    The clock starts when `after` holds (e.g. the first learner step: every role is up). Targets are drawn
    from a shuffled deck (each target once per round, in random order), so a short run still kills each.
    """

    def __init__(self, targets: Sequence[str], *, every_s: float, seed: int = 0,
                 after: Optional[Condition] = None) -> None:
        if every_s <= 0 or not targets:
            raise ValueError("Chaos needs targets and every_s > 0")
        self.targets, self.every_s, self.after = list(targets), every_s, after
        self.rng = random.Random(seed)
        self.kills: list[Kill] = []
        self._t0: Optional[float] = None
        self._next: Optional[float] = None
        self._deck: list[str] = []

    def tick(self, run: RunHandle) -> None:
        now = time.monotonic()
        if self._t0 is None:
            if self.after is not None and not self.after(run):
                return
            self._t0, self._next = now, now + self.every_s
        assert self._next is not None
        if now < self._next:
            return
        if not self._deck:
            self._deck = self.rng.sample(self.targets, len(self.targets))
        up = [t for t in self._deck if target_running(run, t)]
        if not up:  # everything in the deck is restarting: try again next tick
            return
        target = up[0]
        self._deck.remove(target)
        status = run.status()
        pid = kill_target(run, target)
        self.kills.append(Kill(target, pid, now - self._t0, status))
        log.warning("chaos: SIGKILL %s (pid %d) at %.1fs", target, pid, now - self._t0)
        self._next = now + self.every_s

    def finish(self, run: RunHandle) -> None:
        pass

    def counts(self) -> dict[str, int]:
        out = {t: 0 for t in self.targets}
        for k in self.kills:
            out[k.target] += 1
        return out


# -- conditions ("mid-run" moments, read from Redis and the teacher server; never a sleep) -----------

def status_at_least(field_: str, n: int) -> Condition:
    """The run's status counter `field_` has reached `n` (e.g. "student_steps", "pairs_written")."""
    return lambda run: int(run.status().get(field_, 0)) >= n


def teacher_jobs_in_flight(n: int = 1) -> Condition:
    """At least `n` jobs queued or rendering at the teacher server (the teacher actor is polling them)."""
    def check(run: RunHandle) -> bool:
        try:
            r = httpx.get(f"{run.teacher_url}/v1/admin/stats", timeout=5.0,
                          headers={"Authorization": f"Bearer {run.teacher_key.reveal()}"})
        except httpx.HTTPError:  # not listening yet
            return False
        body = r.json()
        return int(body.get("queued", 0)) + int(body.get("in_progress", 0)) >= n

    return check


def group_claimed(run: RunHandle) -> bool:
    """A student actor holds a group lease (it is rolling out, or waiting for that group's teacher clips)."""
    return int(run.redis.zcard(run.keys.next_group + ":running")) > 0


def pairs_pending(learner: str) -> Condition:
    """Pairs delivered to the feeder for `learner` and not yet acked (batches in flight through the feeder)."""
    def check(run: RunHandle) -> bool:
        try:
            return int(run.redis.xpending(run.keys.pairs, learner)["pending"]) > 0
        except Exception:  # noqa: BLE001 - the group does not exist yet
            return False

    return check


def all_of(*conds: Condition) -> Condition:
    return lambda run: all(c(run) for c in conds)
