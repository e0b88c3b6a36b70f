"""Keep `afd run`'s private redis-server alive: restart it on the same port and data dir after a crash.

The server runs with AOF (`appendonly yes`), so a restart replays every write
that any client saw acknowledged: a killed redis-server process loses nothing
at any `appendfsync` setting (Redis writes the AOF to the OS before it
replies), which is what lets every role ride out the outage with redis-py's
own reconnect-and-retry (10 tries, exponential backoff up to 1 s). Only a
power cut loses the last second (`everysec`) or the OS's flush interval (`no`).

The same crash budget as the roles (`supervisor.RestartPolicy`) applies: a
redis-server that keeps dying fails the run with its log tail.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from afd_async.launch.supervisor import CrashBudget, RestartPolicy, RoleFailed
from afd_async.store.redis_server import RedisServer


class RedisGuard:
    """Watches one `RedisServer`; `check()` restarts it when it died (call it from the launcher's loop)."""

    def __init__(self, server: RedisServer, policy: Optional[RestartPolicy]) -> None:
        self.server = server
        self.budget = CrashBudget(policy) if policy is not None else None
        self.downtime_s = 0.0  # total time from a detected death to the restarted server's first PONG

    @property
    def restarts(self) -> int:
        return 0 if self.budget is None else self.budget.restarts

    @property
    def alive(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL the redis-server (a crash, for fault injection); returns its pid."""
        assert self.server.proc is not None
        pid = self.server.proc.pid
        self.server.kill()
        return pid

    def check(self) -> None:
        """Restart a dead server at once (the backoff applies only to crash loops); `RoleFailed` past the budget."""
        if self.alive or self.server.proc is None:
            return
        code = self.server.proc.returncode
        delay = self.budget.crash() if self.budget is not None else None
        if delay is None:
            raise RoleFailed(f"redis-server exited with code {code}; last log lines:\n{self._tail()}")
        t0 = time.monotonic()
        if self.budget is not None and len(self.budget.crashes) > 1:
            time.sleep(delay - self.budget.policy.backoff_s)  # first crash: no wait; a crash loop backs off
        if self.server.proc.stderr is not None:
            self.server.proc.stderr.close()
        self.server.start()
        assert self.budget is not None
        self.budget.restarts += 1
        self.downtime_s += time.monotonic() - t0

    def _tail(self, lines: int = 20) -> str:
        log = Path(self.server.data_dir) / "redis.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else ""
