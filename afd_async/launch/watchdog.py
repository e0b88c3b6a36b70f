"""No silent hang: the launcher watches a run's progress and, when it stops, says who waits on what.

Why: a run whose pipeline is stuck (a teacher that never answers, clips that are
never paired, a role gone while the others wait on it) printed
`student steps 0/4 | pairs 0` until someone killed it (issue 17.4).

    watch = ProgressWatch(stall_timeout_s, start_timeout_s, roles)
    every pass of the launcher's loop:
        watch.observe(status)                            # a counter, a learner phase or a role's ready mark moved:
                                                         # the clock restarts
        if a role exited 0 (supervisor.finished_early()) or watch.stalled():
            raise RunStalled(describe_stall(diagnose(status, gone=..., not_ready=watch.not_ready(), ...), ...))

Start-up is not a stall: each role marks itself ready in the status hash (`ready:<role>`,
`RoleContext.announce_ready`) once its loop begins, and until every role has, the clock runs
against `train.start_timeout_s` (long: imports and model builds under load or at real scale) and a
stall names the roles still starting. Only then does `train.stall_timeout_s` apply, so a short stall
timeout cannot fire on a machine that is merely slow to start the roles.

Progress is any change of the run's status counters (pairs written or dropped,
D version, student steps) or of the student learner's phase (`evaluating`,
`training`, `writing outputs`). `diagnose` walks the pipeline in data order
(teacher requests → teacher clips → pairs → D steps → student steps) and names
the first role whose output is missing, what that role waits for, and the logs
to read. A role that exits 0 while the run is not done stops the run at once
(no role finishes its work before the run does; a crash, non-zero, is the
supervisor's to restart): the others would wait on it forever.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from afd_async.store.keys import RunKeys

PROGRESS_KEYS = ("pairs_written", "pairs_dropped_stale", "d_version", "student_steps", "student_phase")
LOG_LINES = 12  # lines of the waiting role's log shown with a diagnosis


class RunStalled(RuntimeError):
    """The run made no progress for `train.stall_timeout_s`, or a role it needs exited; the message is the diagnosis."""


@dataclass(frozen=True)
class TeacherView:
    """What the launcher reads of the teacher side at a stall (counted once, not every pass)."""

    groups_requested: int  # planned groups whose teacher requests the student actor queued
    queued: int  # requests waiting in the teacher queue
    clips: int  # teacher clips in the cache


@dataclass(frozen=True)
class Stall:
    """A diagnosis: the role the run waits on, a sentence saying what that role waits for (it names the role),
    and the logs worth reading (the first one's tail is shown)."""

    role: str
    what: str
    logs: tuple[str, ...]
    gone: bool = False  # the role exited (code 0) while the run needs it: the run stops at once, not after the timeout


class ProgressWatch:
    """The time since the run's status last moved (see the module docstring); a timeout of 0 never stalls.

    `roles` are the roles that mark themselves ready; until all have, `start_timeout_s` applies.
    """

    def __init__(self, stall_timeout_s: float, start_timeout_s: float = 0.0, roles: Sequence[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_timeout_s, self.start_timeout_s = stall_timeout_s, start_timeout_s
        self.roles, self.clock = tuple(roles), clock
        self.last: Optional[tuple[str, ...]] = None
        self.ready: frozenset[str] = frozenset()
        self.since = clock()

    def observe(self, status: Mapping[str, str]) -> None:
        marks = tuple(str(status.get(RunKeys.ready_field(r), "")) for r in self.roles)
        now = tuple(str(status.get(k, "")) for k in PROGRESS_KEYS) + marks
        if now != self.last:
            self.last, self.since = now, self.clock()
        self.ready = frozenset(r for r, mark in zip(self.roles, marks) if mark)

    def not_ready(self) -> tuple[str, ...]:
        """The roles that have not marked themselves ready yet, in start order."""
        return tuple(r for r in self.roles if r not in self.ready)

    @property
    def timeout_s(self) -> float:
        return self.start_timeout_s if self.not_ready() else self.stall_timeout_s

    @property
    def timeout_key(self) -> str:
        return "train.start_timeout_s" if self.not_ready() else "train.stall_timeout_s"

    @property
    def idle_s(self) -> float:
        return self.clock() - self.since

    def stalled(self) -> bool:
        return self.timeout_s > 0 and self.idle_s >= self.timeout_s


def _int(status: Mapping[str, str], key: str) -> int:
    try:
        return int(float(status.get(key, 0)))
    except ValueError:
        return 0


def diagnose(status: Mapping[str, str], *, steps: int, needs_d: bool, gone: Mapping[str, int],
             teacher: TeacherView, teacher_url: str, not_ready: Sequence[str] = ()) -> Stall:
    """The first missing link of the pipeline, in data order (see the module docstring)."""
    pairs, d_version, s_steps = _int(status, "pairs_written"), _int(status, "d_version"), _int(status, "student_steps")
    if gone:
        role, code = next(iter(gone.items()))
        return Stall(role, f"the {role} exited (code {code}) while the run still needs it: the other roles wait on it",
                     (role,), gone=True)
    if not_ready:
        waiting = ", ".join(not_ready)
        return Stall(not_ready[0], f"the {waiting} {'has' if len(not_ready) == 1 else 'have'} not finished starting "
                                   f"(no ready mark in the run's status)", tuple(not_ready))
    if pairs == 0:
        if teacher.groups_requested == 0:
            return Stall("student-actor", "the student-actor waits for its first group: it has queued no teacher "
                                          "request yet (it claims a group once it has the student learner's weights)",
                         ("student-actor", "student-learner"))
        if teacher.clips == 0:
            return Stall("teacher-actor", f"the teacher-actor waits for the teacher server ({teacher_url}): no "
                                          f"teacher clip made yet for the "
                                          f"{teacher.groups_requested} groups requested ({teacher.queued} requests "
                                          f"still queued); the student actor waits for these clips",
                         ("teacher-actor", "teacher-server", "student-actor"))
        return Stall("student-actor", f"the student-actor waits for the teacher clips of its groups: "
                                      f"{teacher.clips} clips are cached but no pair "
                                      f"was written (clips made for other prompts or seeds than the plan's?)",
                     ("student-actor", "teacher-actor"))
    if needs_d and d_version == 0:
        return Stall("d-learner", f"the d-learner waits for batches from the feeder: no D step yet ({pairs} pairs "
                                  f"written)", ("d-learner", "feeder"))
    phase = status.get("student_phase", "")
    if s_steps < steps:
        if phase == "evaluating":
            return Stall("student-learner", "the student-learner is evaluating (raise train.stall_timeout_s if "
                                            "an evaluation takes this long)", ("student-learner",))
        d = f" and D versions from the d-learner (D v{d_version})" if needs_d else ""
        return Stall("student-learner", f"the student-learner waits for batches from the feeder{d}: at step "
                                        f"{s_steps}/{steps} with {pairs} pairs "
                                        f"written, {_int(status, 'pairs_dropped_stale')} dropped as stale",
                     ("student-learner", "feeder", "d-learner", "student-actor"))
    return Stall("student-learner", f"the student-learner made step {s_steps}/{steps} but has not written the run's "
                                    f"outputs (phase: {phase or 'unknown'})", ("student-learner",))


def describe_stall(stall: Stall, *, idle_s: float, timeout_s: float, status: Mapping[str, str], steps: int,
                   log_dir: Path, tail: Callable[[str], str], timeout_key: str = "train.stall_timeout_s") -> str:
    """The message `afd run` ends with: the diagnosis, the counters, the waiting role's last log lines."""
    shown = stall.logs[0]
    counters = (f"pairs {_int(status, 'pairs_written')} | D v{_int(status, 'd_version')} | "
                f"student steps {_int(status, 'student_steps')}/{steps}")
    lines = tail(shown).splitlines()[-LOG_LINES:]
    more = ", ".join(str(log_dir / f"{r}.log") for r in stall.logs[1:])
    head = stall.what if stall.gone else f"no progress for {idle_s:.0f}s ({timeout_key}={timeout_s:g}): {stall.what}"
    return (f"{head}\n  progress: {counters}\n"
            f"  last lines of {log_dir / f'{shown}.log'}:\n" + "\n".join(f"    {line}" for line in lines)
            + (f"\n  see also: {more}" if more else ""))


__all__ = ["LOG_LINES", "PROGRESS_KEYS", "ProgressWatch", "RunStalled", "Stall", "TeacherView", "describe_stall",
           "diagnose"]
