"""The OpenAI-style adapter against the real local teacher server (afd_async.teacher.server)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Iterator

import numpy as np
import pytest
from emulators.harness import expect
from emulators.providers import anyio_backend  # noqa: F401  (pytest fixture)

from afd_async.teacher.adapters import AmbiguousSubmitError, make_client
from afd_async.teacher.contract import ErrorClass, JobRequest, JobState, JobStatus
from afd_async.teacher.server import FaultConfig, ServerHandle, create_app, serve
from afd_async.video.clip import Clip

pytestmark = pytest.mark.anyio
KEY = "sk-local-server-TEST-6a5b4c3d"
REQ = JobRequest(prompt="a grey dot drifts right", seed=3, params={"size": "16x16", "seconds": 0.5, "fps": 8})


def dot_backend(prompt: str, seed: int, params: dict) -> Clip:
    h, w = params.get("height") or 16, params.get("width") or 16
    t = max(1, round((params.get("fps") or 8) * (params.get("seconds") or 0.5)))
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, h // 2, (seed + i) % w] = 200
    return Clip(frames=frames, fps=float(params.get("fps") or 8))


@contextlib.contextmanager
def server(**overrides: Any) -> Iterator[ServerHandle]:
    kw: dict[str, Any] = dict(backend=dot_backend, api_keys=[KEY], create_rate_per_min=6000, max_in_flight=8,
                              max_queued=8, render_latency_s=0.0, faults=FaultConfig(), result_ttl_s=60.0)
    kw.update(overrides)
    with serve(create_app(**kw)) as handle:
        yield handle


def client(handle: ServerHandle, key: str = KEY, **kw: Any):
    args = dict(base_url=handle.url, credentials={"api_key": key}, timeout_s=5.0, model="dot", retry_wait_s=0.01)
    return make_client("local", **{**args, **kw})


async def finish(c: Any, handle: Any, timeout_s: float = 20.0) -> JobStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = await c.poll(handle)
        if status.state.terminal:
            return status
        assert time.monotonic() < deadline, f"job stuck in {status.state}"
        await asyncio.sleep(min(status.retry_after_s or 0.02, 0.1))


async def test_success_and_mp4_download():
    with server() as srv:
        async with client(srv) as c:
            status = await finish(c, await c.submit(REQ))
            assert status.state is JobState.SUCCEEDED and status.progress == 1.0
            data = await c.download(status)
    assert data[4:8] == b"ftyp"


async def test_rate_limit_with_hint():
    with server(create_rate_per_min=6, create_burst=1) as srv:
        async with client(srv) as c:
            await c.submit(REQ)
            err = await expect(c.submit(JobRequest(prompt="another dot", seed=4)), ErrorClass.RATE_LIMITED)
    assert err.retry_after_s and err.retry_after_s > 1.0


async def test_concurrency_limit():
    with server(max_in_flight=1, render_latency_s=5.0) as srv:
        async with client(srv) as c:
            await c.submit(REQ)
            err = await expect(c.submit(JobRequest(prompt="another dot", seed=4)), ErrorClass.CONCURRENCY_FULL)
    assert err.provider_code == "concurrency_limit" and err.retry_after_s == 1.0


async def test_auth_key_not_leaked():
    with server() as srv:
        async with client(srv, key="sk-WRONG-key-0000000000") as c:
            err = await expect(c.submit(REQ), ErrorClass.AUTH)
    assert KEY not in str(err) and "sk-WRONG-key-0000000000" not in str(err)


async def test_content_policy_failure():
    with server(faults=FaultConfig(content_policy=1.0)) as srv:
        async with client(srv) as c:
            status = await finish(c, await c.submit(REQ))
    assert status.state is JobState.FAILED and status.error_class is ErrorClass.CONTENT_REJECTED


async def test_expired_result():
    with server(faults=FaultConfig(expired_url=1.0)) as srv:
        async with client(srv) as c:
            status = await finish(c, await c.submit(REQ))
            if status.state is JobState.SUCCEEDED:
                await expect(c.download(status), ErrorClass.EXPIRED_RESULT)
            else:
                assert status.state is JobState.EXPIRED and status.error_class is ErrorClass.EXPIRED_RESULT


async def test_ambiguous_submit_then_safe_resubmit():
    with server(faults=FaultConfig(hang=1.0, hang_s=1.0)) as srv:
        async with client(srv, timeout_s=0.3) as c:
            with pytest.raises(AmbiguousSubmitError):
                await c.submit(REQ)
            assert await c.find_job(REQ) is None  # the hang came before the job was made


async def test_find_job_after_submit_and_idempotent_resubmit():
    with server() as srv:
        async with client(srv) as c:
            since = time.time()
            first = await c.submit(REQ)
            found = await c.find_job(REQ, since=since)
            again = await c.submit(REQ)  # same Idempotency-Key: the same job, not a second charge
    assert found is not None and found.job_id == first.job_id == again.job_id

