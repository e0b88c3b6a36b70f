"""What code riding along an `afd run` sees of it (fault injectors, the fault ledger), and when it is called.

    hooks = [KillWhen("feeder", when=lambda run: steps(run) >= 2), FaultLedgerHook()]
    launch(cfg, overrides, hooks=hooks)
        tick(run)    every watch-loop pass (~0.5 s) while the run goes, after crashed processes were restarted
        finish(run)  after the run is done and every role but the teacher server has stopped
                     (Redis and the teacher server still answer: counting happens here)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis

    from afd_async.config.root import RootConfig
    from afd_async.launch.redis_guard import RedisGuard
    from afd_async.launch.supervisor import Supervisor
    from afd_async.store.keys import RunKeys
    from afd_async.config.credentials import Secret


@dataclass
class RunHandle:
    """One running `afd run`: its config, Redis, processes and the local teacher server."""

    cfg: "RootConfig"
    redis: "redis.Redis"
    keys: "RunKeys"
    supervisor: "Supervisor"
    redis_guard: "RedisGuard"
    teacher_url: str
    teacher_key: "Secret"  # the local teacher server's key (reveal only to build a request)
    out: Path

    def status(self) -> dict[str, str]:
        """The run's status hash (progress counters the roles write)."""
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(self.keys.status).items()}

    def restarts(self) -> dict[str, int]:
        """Restarts so far per role, and of the redis-server."""
        return {**self.supervisor.restart_counts(), "redis": self.redis_guard.restarts}


class RunHook(Protocol):
    """Called by the launcher (see the module docstring); exceptions fail the run."""

    def tick(self, run: RunHandle) -> None: ...

    def finish(self, run: RunHandle) -> None: ...
