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
from types import SimpleNamespace
from typing import Callable, Iterable, Optional, Sequence

import redis
import torch

from afd_async.config import load_config
from afd_async.config.root import RootConfig
from afd_async.launch.run import ROLE_ORDER, _prefill_text_cache, role_overrides
from afd_async.launch.supervisor import RestartPolicy, Supervisor, wait_until
from afd_async.models.tiny_discriminator import frames_to_video
from afd_async.replay.pair import decode_meta
from afd_async.replay.writer import F_META
from afd_async.store.keys import RunKeys
from afd_async.runtime.learner_state import learner_checkpoint_dir, read_ledger
from afd_async.store.redis_server import RedisServer
from afd_async.teacher.clips import CacheClipStore
from afd_async.train.sync_loop import SyncLoop


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

    def stream_groups(self) -> dict[str, int]:
        """Redis id -> group index of every pair in the stream."""
        assert self.r is not None
        return {sid.decode(): int(decode_meta(f[F_META])["group"]) for sid, f in self.r.xrange(self.keys.pairs)}

    def pending(self, group: str) -> dict[str, int]:
        """Redis id -> times delivered, of every entry pending (delivered, not acked) in a consumer group."""
        assert self.r is not None
        return {e["message_id"].decode(): int(e["times_delivered"])
                for e in self.r.xpending_range(self.keys.pairs, group, "-", "+", 100_000)}

    def acked(self, group: str, ids: Iterable[str]) -> set[str]:
        """Which of `ids` a consumer group has acknowledged: delivered (up to its last-delivered id), not pending.

        Pass ids read before (`stream_groups()`): the feeder trims entries every group acked.
        """
        assert self.r is not None
        info = {g["name"].decode(): g for g in self.r.xinfo_groups(self.keys.pairs)}[group]
        last = tuple(int(x) for x in info["last-delivered-id"].decode().split("-"))
        pending = self.pending(group)
        return {sid for sid in ids if tuple(int(x) for x in sid.split("-")) <= last and sid not in pending}

    def teacher_batch(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        """`(B, 3, F, H, W)` in [-1, 1]: the teacher clips this run cached (a `SyncLoop.teacher`)."""
        assert self.r is not None
        clips = CacheClipStore(self.r)
        refs = [clips.cached_ref(self.role_cfg.teacher, p, s) for p, s in zip(prompts, seeds)]
        return frames_to_video(torch.stack([c.frames for c in clips.get_many(refs)]))

    def sync_reference(self, steps: int) -> list[dict[str, float]]:
        """`afd sync`'s per-step metrics on this run's seeds and teacher clips (the staleness-0 oracle).

        The clips come from the run's teacher cache: libx264 does not encode bit-reproducibly,
        so a sync loop re-encoding its own clips (`train.sync_teacher_codec`) trains on other clips.
        """
        cfg = load_config([*self.user_overrides, f"train.output_dir={self.out / 'sync'}",
                           f"text.cache_dir={self.out / 'text_cache'}"])
        loop = SyncLoop(cfg)
        loop.teacher = SimpleNamespace(batch=self.teacher_batch)
        loop.warmup_d()
        return [loop.step() for _ in range(steps)]
