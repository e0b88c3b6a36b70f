"""Teacher actor end to end: real redis-server, the real local server over HTTP, real processes.

Helpers here are shared by test_teacher_faults.py and test_teacher_roles.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import httpx
import pytest
import redis

from afd_async import metrics as M
from afd_async.config import load_config
from afd_async.config.root import RootConfig
from afd_async.physics import load_prompt_suite
from afd_async.teacher.actor import TeacherActor, build_gateway, connect_redis, encode_record, make_teacher_client
from afd_async.teacher.clips import CacheClipStore, clip_record_key, teacher_clip_key
from afd_async.teacher.server_role import start_teacher_server

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-test-" + uuid.uuid4().hex
QUEUE = "afd:teacher:queue"

# Fast timings: actors notice deaths in ~1.5 s, polls every 0.1 s, drains 0.5 s.
FAST = [
    "teacher.source.pop_timeout_s=0.3", "teacher.source.actor_ttl_s=1.5", "teacher.gateway.claim_ttl_s=1.5",
    "teacher.gateway.claim_wait_s=0.2", "teacher.gateway.poll_interval_s=0.1", "teacher.gateway.poll_max_interval_s=0.3",
    "teacher.gateway.retry_initial_s=0.05", "teacher.gateway.retry_max_s=0.5", "teacher.gateway.drain_timeout_s=0.5",
    "teacher.quota.lease_ttl_s=3", "teacher.quota.acquire_timeout_s=10",
]


def prompts(n: int) -> list[str]:
    return [r.prompt for r in load_prompt_suite("train")[:n]]


def make_cfg(redis_url: str, port: int, *overrides: str) -> RootConfig:
    return load_config([f"cluster.redis_url={redis_url}", f"cluster.teacher_server_port={port}",
                        "cluster.metrics_port=0", *FAST, *overrides])


class LocalTeacher:
    """The local teacher server in this process (from config, as the role builds it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *overrides: str) -> None:
        monkeypatch.setenv("AFD_TEACHER_API_KEY", KEY)
        cfg = load_config(["cluster.teacher_server_port=0", *overrides])
        self.handle, self._stop = start_teacher_server(cfg, port=0)
        self.port = self.handle.port

    def stats(self) -> dict[str, Any]:
        r = httpx.get(f"{self.handle.url}/v1/admin/stats", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        r.raise_for_status()
        return r.json()

    def close(self) -> None:
        self._stop.set()
        self.handle.stop()


@pytest.fixture()
def teacher(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LocalTeacher]]:
    made: list[LocalTeacher] = []

    def make(*overrides: str) -> LocalTeacher:
        made.append(LocalTeacher(monkeypatch, *overrides))
        return made[-1]

    yield make
    for t in made:
        t.close()


def push(r: redis.Redis, texts: Sequence[str], seed: int = 0) -> None:
    r.lpush(QUEUE, *[encode_record(p, seed) for p in texts])


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll a condition on real state (Redis, the server) until it holds; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def wait_serving(proc: subprocess.Popen, port: int, log_path: Path, timeout_s: float = 60) -> None:
    """Wait until a teacher-server process answers /healthz on `port`; fail with its log if it died first."""
    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert proc.poll() is None, log_path.read_text()
            return False

    wait_for(up, timeout_s, "the teacher server to listen")


def have_clips(r: redis.Redis, cfg: RootConfig, texts: Sequence[str], seed: int = 0) -> int:
    return sum(int(r.exists(clip_record_key(teacher_clip_key(cfg.teacher, p, seed)))) for p in texts)


def dead_letters(r: redis.Redis) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _id, f in r.xrange("afd:teacher:dead")]


def actor_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "AFD_TEACHER_API_KEY": KEY, "PYTHONPATH": str(REPO), "AFD_LOG_LEVEL": "INFO", **extra}
    env.pop("AFD_METRICS_PORT_FILE", None)
    return env


def spawn(role: str, overrides: Sequence[str], log_path: Path, **env: str) -> subprocess.Popen:
    """`python -m afd_async.cli <role> overrides...` with stdout+stderr to `log_path`."""
    f = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "afd_async.cli", role, *overrides], cwd=REPO, env=actor_env(**env),
                            stdout=f, stderr=subprocess.STDOUT)


def cli_overrides(redis_url: str, port: int, *extra: str) -> list[str]:
    return [f"cluster.redis_url={redis_url}", f"cluster.teacher_server_port={port}", "cluster.metrics_port=0",
            *FAST, *extra]


def run_actor_until(cfg: RootConfig, done: Callable[[], bool], timeout_s: float, metrics: Any = None) -> Any:
    """Run a `TeacherActor` in this process until `done()` holds, then stop it; returns its report.

    `metrics` (the role's labels) go to the gateway and the actor, as `actors/teacher_actor.py` wires them.
    """

    async def main() -> Any:
        r = connect_redis(cfg.cluster.redis_url)
        client = make_teacher_client(cfg, {"api_key": KEY})
        actor = TeacherActor(cfg, build_gateway(cfg, r, client, metrics=metrics), r, metrics=metrics)
        task = asyncio.create_task(actor.run())
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(done):
            if time.monotonic() > deadline or task.done():
                break
            await asyncio.sleep(0.05)
        actor.stop()
        report = await asyncio.wait_for(task, 30)
        await client.aclose()
        await r.aclose()
        return report

    return asyncio.run(main())


# ----------------------------------------------------------------------------------------------- tests
def test_queue_to_clips_at_student_size(redis_server, redis_client, teacher):
    srv = teacher("teacher.server.render_latency_s=0.05")
    cfg = make_cfg(redis_server.url, srv.port, "student.height=24", "student.width=40", "student.num_frames=8",
                   "student.chunk_frames=4", "student.patch_size=8", "student.fps=6")
    texts = prompts(6)
    push(redis_client, texts)
    redis_client.lpush(QUEUE, b"\x93not-a-record")  # malformed: dead-lettered as bad_record, never blocks
    report = run_actor_until(cfg, lambda: have_clips(redis_client, cfg, texts) == len(texts), 60)
    assert report.done == 6 and report.bad_records == 1 and report.halted is None
    clips = CacheClipStore(redis_client)  # the one reader (the replay's TeacherClipStore)
    for p in texts:
        ref = clips.cached_ref(cfg.teacher, p, 0)
        assert ref == teacher_clip_key(cfg.teacher, p, 0)
        clip = clips.get(ref)
        meta = clip.meta
        assert tuple(clip.frames.shape) == (8, 24, 40, 3) and str(clip.frames.dtype) == "torch.uint8" and clip.fps == 6.0
        assert meta["source"]["fps"] == 24.0 and (meta["source"]["height"], meta["source"]["width"]) == (96, 96)
        assert meta["provider"] == "openai" and meta["model"] == "physics-v1" and meta["prompt"] == p
    assert redis_client.llen(QUEUE) == 0 and not redis_client.keys("afd:teacher:processing:*")
    assert srv.stats()["creates_accepted"] == 6
    assert [d["error_class"] for d in dead_letters(redis_client)] == ["bad_record"]


def test_sigkilled_actor_is_resumed_without_loss_or_duplicates(redis_server, redis_client, teacher, tmp_path):
    srv = teacher("teacher.server.render_latency_s=2.0")
    cfg = make_cfg(redis_server.url, srv.port)
    texts = prompts(8)
    push(redis_client, texts)
    a = spawn("teacher-actor", cli_overrides(redis_server.url, srv.port, "teacher.concurrency=4"), tmp_path / "a.log")
    try:
        wait_for(lambda: srv.stats()["creates_accepted"] >= 4, 60, "actor A to have 4 jobs in flight")
        assert have_clips(redis_client, cfg, texts) < len(texts)
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        assert redis_client.llen(QUEUE) + sum(redis_client.llen(k) for k in redis_client.keys("afd:teacher:processing:*")) \
            == len(texts) - have_clips(redis_client, cfg, texts)  # nothing popped is lost, even mid-flight
        b = spawn("teacher-actor", cli_overrides(redis_server.url, srv.port, "teacher.concurrency=4"), tmp_path / "b.log")
        wait_for(lambda: have_clips(redis_client, cfg, texts) == len(texts), 90, "actor B to finish every prompt")
        b.send_signal(signal.SIGTERM)
        assert b.wait(30) == 0
    finally:
        for p in (a, locals().get("b")):
            if p is not None and p.poll() is None:
                p.kill()
    stats = srv.stats()
    assert stats["creates_accepted"] == len(texts), stats  # 0 duplicate submits: B resumed A's jobs by id
    journal = {k.decode(): int(v) for k, v in redis_client.hgetall("afd:teacher:journal:stats").items()}
    assert journal.get("resumed", 0) + journal.get("found_by_lookup", 0) >= 1, journal
    assert journal.get("possible_duplicates", 0) == 0 and not dead_letters(redis_client)
    assert redis_client.llen(QUEUE) == 0 and not redis_client.keys("afd:teacher:processing:*")


def test_sigterm_hands_back_in_flight_prompts(redis_server, redis_client, teacher, tmp_path):
    srv = teacher("teacher.server.render_latency_s=3.0")
    cfg = make_cfg(redis_server.url, srv.port)
    texts = prompts(4)
    push(redis_client, texts)
    a = spawn("teacher-actor", cli_overrides(redis_server.url, srv.port, "teacher.concurrency=4"), tmp_path / "a.log")
    try:
        wait_for(lambda: srv.stats()["creates_accepted"] == 4, 60, "4 jobs in flight")
        t0 = time.monotonic()
        a.send_signal(signal.SIGTERM)
        assert a.wait(30) == 0
        assert time.monotonic() - t0 < 10
    finally:
        if a.poll() is None:
            a.kill()
    assert have_clips(redis_client, cfg, texts) == 0
    assert redis_client.llen(QUEUE) == 4 and not redis_client.keys("afd:teacher:processing:*")
    states = {redis_client.hget(k, "state") for k in redis_client.keys("afd:teacher:job:*")}
    assert states == {b"submitted"}  # resumable by job id
    report = run_actor_until(cfg, lambda: have_clips(redis_client, cfg, texts) == 4, 60)
    assert report.done == 4 and srv.stats()["creates_accepted"] == 4  # resumed, not resubmitted


class CountingLabels:
    """Stands in for a role's `RoleLabels`: counts every `inc` by (metric, labels)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[Any, tuple[tuple[str, str], ...]], float] = {}

    def __call__(self, metric: Any, **labels: str) -> Any:
        key, outer = (metric, tuple(sorted(labels.items()))), self

        class _Child:
            def inc(self, n: float = 1) -> None:
                outer.counts[key] = outer.counts.get(key, 0) + n

            def set(self, value: float) -> None: ...

            def observe(self, value: float) -> None: ...

        return _Child()

    def beat(self) -> None: ...


def test_file_source_counts_logs_and_dead_letters_every_bad_line(redis_server, redis_client, teacher, tmp_path, caplog):
    """Issue 17.3: a teacher.source.kind=file actor checks every line as `afd run prompts=` does; a bad line is
    counted, logged with its number and dead-lettered, never silently skipped, and the good ones are rendered."""
    srv = teacher("teacher.server.render_latency_s=0.05")
    path = tmp_path / "mine.txt"
    path.write_bytes(b"# mine\na ball is thrown up and falls down\na glorp ball bounces\nx\ta red cube slides to the left\n"
                     b"x\ta pendulum swings\na blue \xff ball falls\n")
    cfg = make_cfg(redis_server.url, srv.port, "teacher.source.kind=file", f"teacher.source.path={path}")
    good = ["a ball is thrown up and falls down", "a red cube slides to the left"]
    labels = CountingLabels()
    with caplog.at_level("WARNING", logger="afd_async.teacher.actor"):
        report = run_actor_until(cfg, lambda: have_clips(redis_client, cfg, good) == 2, 120, metrics=labels)
    assert report.done == 2 and report.bad_records == 3 and report.halted is None
    assert have_clips(redis_client, cfg, good) == 2
    problems = [f"{path}:3: 'a glorp ball bounces': unknown word 'glorp'", f"{path}:5: duplicate id 'x' (first on line 4)",
                f"{path}:6: not UTF-8 (byte offset 122); save the file as UTF-8"]
    dead = dead_letters(redis_client)
    assert [(d["error_class"], d["line"], d["source"]) for d in dead] == [("bad_record", n, str(path)) for n in "356"]
    assert all(d["reason"].startswith(p) for d, p in zip(dead, problems))
    skipped = [r.getMessage() for r in caplog.records if "bad prompt line skipped" in r.getMessage()]
    assert len(skipped) == 3 and all(p in m for p, m in zip(problems, skipped))
    assert labels.counts[(M.TEACHER_ACTOR_JOBS, (("state", "dead_lettered"),))] == 3  # afd_teacher_actor_jobs_total


def test_file_source_without_a_good_line_stops_the_role(redis_server, redis_client, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a glorp ball bounces\n\xff\n")
    log_path = tmp_path / "actor.log"
    proc = spawn("teacher-actor", cli_overrides(redis_server.url, 1, "teacher.source.kind=file",
                                                f"teacher.source.path={path}"), log_path)
    try:
        assert proc.wait(60) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
    log = log_path.read_text()
    assert (f"teacher actor stopped before any job: {path}: no usable prompt, all 2 prompt lines are bad:\n"
            f"  {path}:1: 'a glorp ball bounces': unknown word 'glorp'") in log
    assert f"  {path}:2: not UTF-8 (byte offset 21); save the file as UTF-8" in log
    assert not dead_letters(redis_client)
