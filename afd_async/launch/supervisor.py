"""Start role processes, watch them, restart the ones that crash, stop them gracefully.

A role is a child process running `python -m afd_async.cli <role> [overrides]`
with its own log file. Secrets reach children through the environment only
(never argv, which `ps` shows to every user).

Restarts (`RestartPolicy`): a role that exits non-zero while the run still
needs it is started again with the same command, after a backoff that doubles
with each crash inside `window_s`; more than `max_restarts` crashes inside the
window fail the run with the role's log tail (a crash loop is a bug, not a
fault to ride out). Exit 0 means the role finished its work and is left alone.
Every role is written to survive a restart: its durable state is in Redis
(leases, consumer groups, the teacher journal) or in its checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Mapping, Optional, Sequence

from afd_async.launch.orphan import SUPERVISOR_PID_ENV
from afd_async.parallel.dist import NO_MULTICAST_ENV


LAST_GRACE_S = 3.0  # least time `terminate_all` gives the roles it stops last


class RoleFailed(RuntimeError):
    """A role process exited while the run still needed it (and may not be restarted again)."""


@dataclass(frozen=True)
class RestartPolicy:
    """How crashed roles are restarted (see the module docstring); `max_restarts=0` never restarts."""

    max_restarts: int = 5
    window_s: float = 300.0
    backoff_s: float = 0.5
    backoff_max_s: float = 10.0

    def delay_s(self, crashes_in_window: int) -> float:
        """Backoff before the restart that follows the n-th crash in the window (n ≥ 1)."""
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(0, crashes_in_window - 1))


class CrashBudget:
    """Crash times of one process inside the sliding window; says when the budget is spent."""

    def __init__(self, policy: RestartPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy, self.clock = policy, clock
        self.crashes: list[float] = []
        self.restarts = 0

    def crash(self) -> Optional[float]:
        """Record a crash; the backoff before restarting, or None when the budget is spent."""
        now = self.clock()
        self.crashes = [t for t in self.crashes if now - t <= self.policy.window_s] + [now]
        if len(self.crashes) > self.policy.max_restarts:
            return None
        return self.policy.delay_s(len(self.crashes))


@dataclass
class Role:
    name: str
    command: str
    overrides: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: Optional[subprocess.Popen[bytes]] = None
    log_path: Optional[Path] = None
    budget: Optional[CrashBudget] = None
    restart_at: Optional[float] = None  # monotonic time of a scheduled restart
    stopping: bool = False  # set by stop(): an exit is expected now
    exits: list[int] = field(default_factory=list)  # exit codes of crashed incarnations
    ranks: int = 1  # > 1: a data-parallel learner, started as that many torchrun ranks (one process group)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def restarts(self) -> int:
        return 0 if self.budget is None else self.budget.restarts


class Supervisor:
    """Owns the role processes of one run. Use as a context manager: exit stops everything.

    Args:
        log_dir: one `<role>.log` per role (restarts append to it).
        base_env: environment of every role (default: this process's).
        restart: restart policy; None keeps the old contract (any non-zero exit fails `check()`).
    """

    def __init__(self, log_dir: str | Path, *, base_env: Optional[Mapping[str, str]] = None,
                 restart: Optional[RestartPolicy] = None,
                 spawn_guard: Callable[[], ContextManager[object]] = contextlib.nullcontext) -> None:
        self.spawn_guard = spawn_guard  # held around each start and its bookkeeping (`afd run`: signals deferred)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.restart = restart
        self.roles: list[Role] = []

    def start(self, name: str, command: str, overrides: Sequence[str] = (), env: Optional[Mapping[str, str]] = None,
              *, ranks: int = 1) -> Role:
        role = Role(name, command, list(overrides), dict(env or {}), ranks=ranks)
        role.log_path = self.log_dir / f"{name}.log"
        if self.restart is not None:
            role.budget = CrashBudget(self.restart)
        with self.spawn_guard():
            self._spawn(role)
            self.roles.append(role)
        return role

    def _spawn(self, role: Role) -> None:
        assert role.log_path is not None
        full_env = {**self.base_env, **role.env, "PYTHONUNBUFFERED": "1", "AFD_ROLE_NAME": role.name,
                    SUPERVISOR_PID_ENV: str(os.getpid())}  # roles stop if this process dies (launch/orphan.py)
        launcher = [sys.executable, "-m", "afd_async.cli"]
        if role.ranks > 1:  # torchrun's agent starts the ranks; a rank that dies takes the group down, we restart it
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                        str(role.ranks), "-m", "afd_async.cli"]
            full_env.update(NO_MULTICAST_ENV)
        with role.log_path.open("ab") as log:
            role.proc = subprocess.Popen(
                [*launcher, role.command, *role.overrides],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the launcher only; it stops roles in order
            )

    def role(self, name: str) -> Role:
        for r in self.roles:
            if r.name == name:
                return r
        raise KeyError(f"no role {name!r}; roles: {[r.name for r in self.roles]}")

    def check(self) -> None:
        """Restart crashed roles (when due); raise `RoleFailed` with the log tail once a role is out of restarts.

        A role that finished its work exits 0 and is not restarted.
        """
        now = time.monotonic()
        for role in self.roles:
            if role.stopping or role.proc is None:
                continue
            code = role.proc.poll()
            if role.restart_at is not None:
                if now >= role.restart_at:
                    role.restart_at = None
                    assert role.budget is not None
                    role.budget.restarts += 1
                    self._note(role, f"restart #{role.budget.restarts} (previous exit code {role.exits[-1]})")
                    with self.spawn_guard():
                        self._spawn(role)
                continue
            if code in (None, 0):
                continue
            role.exits.append(code)
            delay = role.budget.crash() if role.budget is not None else None
            if delay is None:
                why = "" if role.budget is None else f" (crash {len(role.budget.crashes)} within " \
                      f"{role.budget.policy.window_s:.0f}s, {role.budget.policy.max_restarts} restarts allowed)"
                raise RoleFailed(f"role {role.name} exited with code {code}{why}; last log lines:\n{self.tail(role)}")
            role.restart_at = now + delay

    def _note(self, role: Role, text: str) -> None:
        if role.log_path is not None:
            with role.log_path.open("a") as f:
                f.write(f"\n=== supervisor: {text} ===\n")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` (default SIGKILL: a crash) to a running role's process group; returns the pid."""
        role = self.role(name)
        if not role.running:
            raise RuntimeError(f"role {name} is not running")
        assert role.proc is not None
        os.killpg(role.proc.pid, sig)
        return role.proc.pid

    def restart_counts(self) -> dict[str, int]:
        return {r.name: r.restarts for r in self.roles}

    def tail(self, role: Role, lines: int = 20) -> str:
        if role.log_path is None or not role.log_path.is_file():
            return ""
        return "\n".join(role.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, role: Role, timeout_s: float = 20.0) -> Optional[int]:
        """SIGTERM (roles finish or hand back in-flight work), then SIGKILL after `timeout_s`."""
        role.stopping = True
        role.restart_at = None
        if role.proc is None:
            return None
        if role.proc.poll() is None and role.ranks > 1:
            # torchrun's agent exits 1 on a SIGTERM (SignalException) even when every rank stops cleanly; the
            # run's stop key is already set, so let the ranks finish their step and exit on their own first
            try:
                role.proc.wait(timeout=min(timeout_s, 15.0))
            except subprocess.TimeoutExpired:
                pass
        if role.proc.poll() is None:
            role.proc.send_signal(signal.SIGTERM)
            try:
                role.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(role.proc.pid, signal.SIGKILL)  # the whole group: torchrun's ranks with their agent
                role.proc.wait()
        return role.proc.returncode

    def finished_early(self) -> dict[str, int]:
        """Roles whose process exited 0 (finished its work) without being stopped: `{name: 0}`.

        The launcher asks while the run is not done: such a role is gone while the others may wait on it.
        """
        return {r.name: 0 for r in self.roles
                if not r.stopping and r.restart_at is None and r.proc is not None and r.proc.poll() == 0}

    def terminate_all(self, grace_s: float = 10.0, *, last: Sequence[str] = (),
                      hurry: Optional[threading.Event] = None) -> dict[str, Optional[int]]:
        """Stop every role at once: SIGTERM to each role's process group, SIGKILL to the groups left after `grace_s`.

        For an interrupted or failed run (`stop_all` is the orderly end of a finished one): each role handles
        SIGTERM as a graceful stop (a learner finishes its step and checkpoints), in parallel, so the whole run
        ends within about `grace_s`. The roles in `last` (servers the others finish their work against, e.g. the
        teacher server a teacher actor drains its jobs from) get SIGTERM once the others are gone, with what is
        left of the grace (at least `LAST_GRACE_S`). `hurry` set (a second Ctrl-C) cuts the grace short. Returns
        exit codes (negative: the signal that ended the process; -9: SIGKILL after the grace).
        """
        for role in self.roles:
            role.stopping, role.restart_at = True, None
        t0 = time.monotonic()
        first = [r for r in self.roles if r.name not in last]
        self._terminate(first, t0, t0 + grace_s, hurry)
        self._terminate([r for r in self.roles if r.name in last], t0,
                        max(t0 + grace_s, time.monotonic() + LAST_GRACE_S), hurry)
        return {r.name: (r.proc.returncode if r.proc is not None else None) for r in self.roles}

    def _terminate(self, roles: Sequence[Role], t0: float, deadline: float, hurry: Optional[threading.Event]) -> None:
        live = [r for r in roles if r.running]
        for role in live:
            assert role.proc is not None
            _signal_group(role.proc, signal.SIGTERM)
        waiting = list(live)
        while waiting and time.monotonic() < deadline and not (hurry and hurry.is_set()):
            for role in [r for r in waiting if not r.running]:
                waiting.remove(role)
                assert role.proc is not None
                self._note(role, f"stopped by SIGTERM after {time.monotonic() - t0:.1f}s (exit code {role.proc.returncode})")
            time.sleep(0.05)
        for role in live:
            assert role.proc is not None
            if role.proc.poll() is None:
                self._note(role, f"no stop {time.monotonic() - t0:.0f}s after SIGTERM: SIGKILL")
            _signal_group(role.proc, signal.SIGKILL)  # also ranks or helpers a stopped agent left behind
            role.proc.wait()

    def stop_all(self, timeout_s: float = 20.0, *, keep: Sequence[str] = ()) -> dict[str, Optional[int]]:
        """Stop in reverse start order (consumers before producers before servers), except the roles in `keep`."""
        return {r.name: self.stop(r, timeout_s) for r in reversed(self.roles) if r.name not in keep}

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """`sig` to the process group a role leads (its own session: `start_new_session`); gone already is fine."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(predicate, *, timeout_s: float, interval_s: float = 0.1, what: str = "condition", supervisor: Optional[Supervisor] = None) -> None:
    """Poll `predicate()` until true; fail fast if a role died (or restart it, under a policy), or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if supervisor is not None:
            supervisor.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)
