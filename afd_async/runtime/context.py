"""What every role process holds once: its config, Redis client, run keys, metrics, stop event and log.

A role's wiring (`launch/roles/`) builds one `RoleContext` at start and hands it to the role's loop
(`runtime/*_role.py`), so the loops read the run's stop key, status hash and metrics the same way
and none of them opens its own connection or installs its own signal handlers.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional

import redis
import torch

from afd_async import metrics as M
from afd_async.config.prompts import train_prompts
from afd_async.config.root import RootConfig
from afd_async.metrics import RoleLabels
from afd_async.runtime.groups import GroupClaims
from afd_async.store.connect import redis_client
from afd_async.store.keys import RunKeys
from afd_async.train.plan import Planner

log = logging.getLogger(__name__)


def tcp(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


def weight_endpoints(host: str, port: int) -> tuple[str, str]:
    """(announce, fetch) endpoints of a weights channel: a publisher binds `port` and `port + 1`."""
    return tcp(host, port), tcp(host, port + 1)


def make_planner(cfg: RootConfig) -> Planner:
    """The run's plan; every role and the fault ledger build the same one from the config."""
    return Planner(train_prompts(cfg), run_seed=cfg.train.seed, batch_size=cfg.train.batch_size,
                   rollouts_per_prompt=cfg.algo.rollouts_per_prompt, warmup_groups=cfg.algo.d_warmup_steps,
                   train_groups=cfg.train.steps)


def make_claims(cfg: RootConfig, client: redis.Redis, keys: RunKeys, planner: Planner) -> GroupClaims:
    return GroupClaims(client, keys, total_groups=planner.total_groups, warmup_groups=planner.warmup_groups,
                       staleness=cfg.replay.staleness, lease_s=cfg.replay.group_lease_s)


def start_metrics(cfg: RootConfig, role: str, *, ranks: int = 1) -> RoleLabels:
    """Start the role's metrics endpoint; the ranks of a data-parallel learner take consecutive ports."""
    labels, port = M.start_role_metrics(role, port=cfg.cluster.metrics_port, host=cfg.cluster.host,
                                        tries=cfg.cluster.metrics_port_tries + ranks - 1)
    log.info("%s: metrics on %s:%d", role, cfg.cluster.host, port)
    return labels


def torch_threads(cfg: RootConfig) -> None:
    if cfg.train.torch_threads:
        torch.set_num_threads(cfg.train.torch_threads)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT, so role loops finish their current unit of work and exit."""
    stop = threading.Event()

    def handler(signum: int, _frame: Optional[object]) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


@dataclass
class RoleContext:
    """One role process's shared handles (built once by `build`, then passed to the role's loop)."""

    cfg: RootConfig
    role: str
    redis: redis.Redis
    keys: RunKeys
    metrics: RoleLabels
    stop: threading.Event
    log: logging.Logger

    @classmethod
    def build(cls, cfg: RootConfig, role: str, *, metrics: Optional[RoleLabels] = None) -> RoleContext:
        """Metrics endpoint, then signal handling and Redis, in that order.

        A learner passes the `metrics` it started before joining its learner world, so its port is bound
        before the rendezvous and a SIGTERM during the rendezvous still ends the process. Torch's thread
        count is the wiring's (`torch_threads`): the feeder leaves torch's default.
        """
        if metrics is None:
            metrics = start_metrics(cfg, role)
        stop = stop_on_signals()
        return cls(cfg=cfg, role=role, redis=redis_client(cfg.cluster), keys=RunKeys(), metrics=metrics, stop=stop,
                   log=logging.getLogger(f"afd.{role}"))

    def stopped(self) -> bool:
        """True once SIGTERM/SIGINT came or the run's stop key is set (which then also sets `stop`)."""
        if self.redis.exists(self.keys.stop):
            self.stop.set()
        return self.stop.is_set()

    def watch_stop_key(self) -> threading.Thread:
        """Poll the run's stop key in the background, so a loop blocked on work that never comes still ends."""
        def watch() -> None:
            while not self.stopped():
                self.stop.wait(0.5)

        thread = threading.Thread(target=watch, name=f"{self.role}-stop-key", daemon=True)
        thread.start()
        return thread

    def announce_ready(self) -> None:
        """Mark this role started in the run's status (its loop begins): the launcher's stall clock waits for it.
        The value (pid and time) changes with every start, so a restarted role's mark is progress too."""
        self.redis.hset(self.keys.status, self.keys.ready_field(self.role), f"{os.getpid()}@{time.time():.3f}")

    def set_status(self, **fields: object) -> None:
        """Fields of the run's status hash (the launcher's progress and stall watch read them)."""
        self.redis.hset(self.keys.status, mapping=fields)

    def status(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(self.keys.status).items()}
