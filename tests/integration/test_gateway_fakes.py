"""Test doubles for the gateway tests (no tests here).

`FakeProvider` implements `TeacherClient` in pure Python; its state (jobs,
counters, injected errors, events) lives in Redis so that several processes can
share one "provider" and an actor can be killed mid-job. It enforces its own
create rate (GCRA, with a network-jitter tolerance) and in-flight cap, answering
429 / CONCURRENCY_FULL like a real provider, and counts every create.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any, Optional

import numpy as np
import redis.asyncio as aioredis

from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState, JobStatus, TeacherError
from afd_async.teacher.cache import TeacherCache
from afd_async.teacher.gateway import TeacherGateway
from afd_async.teacher.journal import SubmitJournal, request_digest
from afd_async.teacher.quota import SharedQuota
from afd_async.video.clip import Clip

FPS, T, H, W = 8.0, 4, 6, 8


def fake_video(prompt: str, seed: int) -> bytes:
    rng = np.random.default_rng(int(hashlib.sha256(f'{prompt}|{seed}'.encode()).hexdigest()[:8], 16))
    return b"FAKE" + rng.integers(0, 256, size=(T, H, W, 3), dtype=np.uint8).tobytes()


def decode(data: bytes) -> Clip:
    """The test's stand-in for decode+resample: `FAKE` + raw frames, else CORRUPT_RESULT."""
    if not data.startswith(b"FAKE") or len(data) != 4 + T * H * W * 3:
        raise TeacherError(ErrorClass.CORRUPT_RESULT, f"not a fake video ({len(data)} bytes)")
    return Clip(frames=np.frombuffer(data[4:], dtype=np.uint8).reshape(T, H, W, 3), fps=FPS)


class FakeProvider:
    """A provider account whose state is in Redis under `fake:`.

    Args:
        polls_to_finish: polls before a job reports its outcome.
        rate_per_s / burst: provider-side create limit (None: unlimited); violations answer 429.
        max_in_flight: provider-side cap on unfinished jobs; violations answer CONCURRENCY_FULL.
    """

    provider = "fake"

    def __init__(self, redis: aioredis.Redis, *, polls_to_finish: int = 1, rate_per_s: Optional[float] = None,
                 burst: int = 1, max_in_flight: Optional[int] = None, jitter_s: float = 0.05) -> None:
        self.r = redis
        self.polls_to_finish = polls_to_finish
        self.rate_per_s, self.burst, self.max_in_flight, self.jitter_s = rate_per_s, burst, max_in_flight, jitter_s

    # -------- test controls
    async def inject(self, op: str, error_class: Optional[ErrorClass] = None, *, times: int = 1,
                     retry_after_s: Optional[float] = None, action: str = "raise") -> None:
        """Next `times` calls of `op` (submit/poll/download/find) raise `error_class`, or do `action`
        (`hang_before_create` / `hang_after_create`: never answer, having created the job or not;
        `corrupt`: return bad bytes)."""
        spec = json.dumps({"cls": error_class.value if error_class else None, "ra": retry_after_s, "action": action})
        await self.r.rpush(f"fake:inject:{op}", *([spec] * times))

    async def inject_outcome(self, state: JobState, error_class: Optional[ErrorClass] = None) -> None:
        """The next created job ends in `state` (with `error_class`)."""
        await self.r.rpush("fake:inject:outcome", json.dumps([state.value, error_class.value if error_class else None]))

    async def hold(self, on: bool) -> None:
        """While held, every job stays RUNNING."""
        await (self.r.set("fake:hold", 1) if on else self.r.delete("fake:hold"))

    async def counter(self, name: str) -> int:
        return int(await self.r.hget("fake:count", name) or 0)

    async def wait_event(self, timeout_s: float = 10.0) -> str:
        """Block until the provider records an event (`created:<id>`, `polled:<id>`)."""
        got = await self.r.blpop(["fake:events"], timeout=timeout_s)
        assert got is not None, "no provider event within the timeout"
        return got[1].decode()

    # -------- TeacherClient
    async def _injected(self, op: str) -> Optional[dict[str, Any]]:
        raw = await self.r.lpop(f"fake:inject:{op}")
        if raw is None:
            return None
        spec = json.loads(raw)
        if spec["action"] == "raise":
            raise TeacherError(ErrorClass(spec["cls"]), f"injected {op} failure", retry_after_s=spec["ra"])
        return spec

    async def _admit(self) -> None:
        now = _server_time(await self.r.time())
        if self.max_in_flight is not None and await self.r.scard("fake:running") >= self.max_in_flight:
            await self.r.hincrby("fake:count", "concurrency_full", 1)
            raise TeacherError(ErrorClass.CONCURRENCY_FULL, "too many running jobs", retry_after_s=None)
        if self.rate_per_s is not None:
            interval = 1.0 / self.rate_per_s
            past = [float(x) for x in await self.r.zrange("fake:creates", 0, -1, withscores=False)]
            n = len(past)
            for i, t in enumerate(past):
                if n - i + 1 > self.burst + int((now - t + self.jitter_s) / interval):
                    await self.r.hincrby("fake:count", "rate_limited", 1)
                    raise TeacherError(ErrorClass.RATE_LIMITED, "429 too many creates", retry_after_s=interval)
            await self.r.zadd("fake:creates", {repr(now): now})

    async def submit(self, request: JobRequest) -> JobHandle:
        spec = await self._injected("submit")
        if spec and spec["action"] == "hang_before_create":
            await self.r.rpush("fake:events", "submitting")
            await asyncio.Event().wait()
        await self._admit()
        job_id = uuid.uuid4().hex[:12]
        outcome = await self.r.lpop("fake:inject:outcome")
        await self.r.hset(f"fake:job:{job_id}", mapping={
            "prompt": request.prompt, "seed": request.seed, "polls": 0,
            "outcome": outcome or json.dumps([JobState.SUCCEEDED.value, None])})
        await self.r.sadd("fake:running", job_id)
        await self.r.hset("fake:byreq", request_digest(self.provider, request), job_id)
        await self.r.hincrby("fake:count", "submits", 1)
        await self.r.rpush("fake:events", f"created:{job_id}")
        if spec and spec["action"] == "hang_after_create":
            await asyncio.Event().wait()
        return JobHandle(provider=self.provider, job_id=job_id, model=request.model)

    async def poll(self, handle: JobHandle) -> JobStatus:
        await self._injected("poll")
        key = f"fake:job:{handle.job_id}"
        polls = await self.r.hincrby(key, "polls", 1)
        await self.r.rpush("fake:events", f"polled:{handle.job_id}")
        if await self.r.exists("fake:hold") or polls < self.polls_to_finish:
            return JobStatus(handle=handle, state=JobState.RUNNING, retry_after_s=0.01)
        state, cls = json.loads(await self.r.hget(key, "outcome"))
        await self.r.srem("fake:running", handle.job_id)
        return JobStatus(handle=handle, state=JobState(state), result_url=f"fake://{handle.job_id}",
                         error_class=ErrorClass(cls) if cls else None, error_message="injected outcome" if cls else None,
                         usage={"credits": 1.0})

    async def download(self, status: JobStatus) -> bytes:
        spec = await self._injected("download")
        await self.r.hincrby("fake:count", "downloads", 1)
        if spec and spec["action"] == "corrupt":
            return b"BAD"
        job = await self.r.hgetall(f"fake:job:{status.handle.job_id}")
        return fake_video(job[b"prompt"].decode(), int(job[b"seed"]))

    async def cancel(self, handle: JobHandle) -> None:
        await self.r.srem("fake:running", handle.job_id)

    async def aclose(self) -> None:
        await self.r.aclose()


class FakeProviderWithLookup(FakeProvider):
    """A provider whose API can list jobs: offers `find_job` for ambiguous creates."""

    async def find_job(self, request: JobRequest, *, since: Optional[float] = None) -> Optional[JobHandle]:
        await self._injected("find")
        await self.r.hincrby("fake:count", "lookups", 1)
        job_id = await self.r.hget("fake:byreq", request_digest(self.provider, request))
        return JobHandle(provider=self.provider, job_id=job_id.decode(), model=request.model) if job_id else None


def _server_time(t: tuple[int, int]) -> float:
    return t[0] + t[1] / 1e6


def make_gateway(client_kwargs: dict[str, Any], *, lookup: bool = False, provider_kw: Optional[dict[str, Any]] = None,
                 quota_kw: Optional[dict[str, Any]] = None, journal_kw: Optional[dict[str, Any]] = None,
                 **gw_kw: Any) -> tuple[TeacherGateway, FakeProvider]:
    """A gateway on its own Redis connections with fast test timings, and its fake provider."""
    r = aioredis.Redis(**client_kwargs)
    fake = (FakeProviderWithLookup if lookup else FakeProvider)(aioredis.Redis(**client_kwargs), **(provider_kw or {}))
    qkw: dict[str, Any] = dict(create_rate_per_min=60000.0, burst=10, max_in_flight=8, lease_ttl_s=5.0,
                               aimd_cooldown_s=0.0)
    qkw.update(quota_kw or {})
    jkw: dict[str, Any] = dict(claim_ttl_s=0.6, ambiguity_timeout_s=60.0)
    jkw.update(journal_kw or {})
    gkw: dict[str, Any] = dict(poll_interval_s=0.01, poll_max_interval_s=0.05, retry_initial_s=0.01, retry_max_s=0.05,
                               acquire_timeout_s=10.0, call_timeout_s=5.0)
    gkw.update(gw_kw)
    account = qkw.pop("account", "acct")
    gw = TeacherGateway(fake, SharedQuota(r, account, **qkw), SubmitJournal(r, **jkw), TeacherCache(r), decode, **gkw)
    return gw, fake


def run(coro: Any, timeout_s: float = 30.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(main())
