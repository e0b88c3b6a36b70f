"""A local cluster for system tests: a private redis-server and every role as a real process.

What `afd run` starts (`launch.run`), minus the progress watcher, so a test can
kill, SIGTERM and restart single roles and read Redis and the learners'
checkpoints while the run goes on:

    with LocalCluster(tmp_path, ["experiment=smoke", "replay.staleness=0"]) as c:
        c.wait_for(lambda: c.status_int("student_steps") >= 3, what="3 student steps")
        c.supervisor.kill("student-learner")          # restarted by the supervisor's policy
        c.wait_for(lambda: c.status().get("done") == "1", what="the run to finish")
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable, Optional, Sequence

import redis

from afd_async.config import load_config
from afd_async.config.root import RootConfig
from afd_async.launch.run import ROLE_ORDER, _prefill_text_cache, role_overrides
from afd_async.launch.supervisor import RestartPolicy, Supervisor, wait_until
from afd_async.runtime.keys import RunKeys
from afd_async.runtime.learner_state import learner_checkpoint_dir, read_ledger
from afd_async.testing.redis_server import RedisServer


class LocalCluster:
    """Every role of one run as a process on loopback (a context manager; exit stops them all).

    Args:
        out: the run's output folder.
        overrides: Hydra overrides of the run (the cluster block is added here).
        restart: the supervisor's restart policy for crashed roles (None: a crash fails `wait_for`).
    """

    def __init__(self, out: str | Path, overrides: Sequence[str], *, restart: Optional[RestartPolicy] = None) -> None:
        self.out = Path(out)
        self.user_overrides = list(overrides)
        self.restart = restart
        self.keys = RunKeys()
        self.cfg: RootConfig = load_config([*self.user_overrides, f"train.output_dir={self.out}"])
        self.redis_server: Optional[RedisServer] = None
        self.supervisor: Optional[Supervisor] = None
        self.r: Optional[redis.Redis] = None
        self.overrides: list[str] = []

    def __enter__(self) -> LocalCluster:
        text_cache = self.out / "text_cache"
        _prefill_text_cache(self.cfg, text_cache)
        env = {**os.environ, "AFD_TEACHER_API_KEY": secrets.token_urlsafe(24), "HF_HUB_OFFLINE": "1"}
        self.redis_server = RedisServer(data_dir=str(self.out / "redis")).__enter__()
        try:
            self.supervisor = Supervisor(self.out / "logs", base_env=env, restart=self.restart)
            self.overrides = [*self.user_overrides,
                              *role_overrides(self.cfg, self.redis_server.port, self.out, text_cache, taken=set())]
            self.role_cfg = load_config(self.overrides)
            for role in ROLE_ORDER:
                self.start(role)
            self.r = redis.Redis(**self.redis_server.client_kwargs())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.supervisor is not None:
            self.supervisor.stop_all(timeout_s=30)
        if self.redis_server is not None:
            self.redis_server.__exit__(None, None, None)

    def start(self, role: str):  # noqa: ANN201 - a supervisor Role
        """Start (or start again) `role` with the run's overrides."""
        assert self.supervisor is not None
        return self.supervisor.start(role, role, self.overrides, env={"AFD_ACTOR_ID": f"{role}-0"})

    def status(self) -> dict[str, str]:
        assert self.r is not None
        return {k.decode(): v.decode() for k, v in self.r.hgetall(self.keys.status).items()}

    def status_int(self, key: str) -> int:
        return int(float(self.status().get(key, 0)))

    def wait_for(self, predicate: Callable[[], bool], *, what: str, timeout_s: float = 300.0,
                 interval_s: float = 0.05) -> None:
        """Wait on a condition; the supervisor restarts crashed roles meanwhile (its policy) or fails fast."""
        wait_until(predicate, timeout_s=timeout_s, interval_s=interval_s, what=what, supervisor=self.supervisor)

    def checkpoint_dir(self, role: str) -> Path:
        return learner_checkpoint_dir(self.role_cfg, role)

    def ledger(self, role: str) -> Optional[dict]:
        """The newest durable checkpoint's ledger of a learner role."""
        return read_ledger(self.checkpoint_dir(role))
