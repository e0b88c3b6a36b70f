"""Contract checks every adapter test runs against its emulator (test code).

Each check takes `make(**overrides) -> client` (an adapter pointed at the
emulator) and the emulator, and asserts one behaviour of the job contract.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Awaitable, Callable, Optional

import pytest

from afd_async.teacher.adapters import AmbiguousSubmitError, supports_find_job
from afd_async.teacher.contract import ErrorClass, JobRequest, JobState, JobStatus, TeacherClient, TeacherError

from .base import FAKE_MP4, Emulator

Make = Callable[..., TeacherClient]
REQUEST = JobRequest(prompt="a red ball falls and bounces twice", seed=7)


async def run_job(client: TeacherClient, request: JobRequest = REQUEST, max_polls: int = 10) -> JobStatus:
    handle = await client.submit(request)
    for _ in range(max_polls):
        status = await client.poll(handle)
        if status.state.terminal:
            return status
    raise AssertionError(f"job {handle.job_id} did not finish in {max_polls} polls")


async def expect(coro: Awaitable[Any], cls: ErrorClass) -> TeacherError:
    with pytest.raises(TeacherError) as info:
        await coro
    assert info.value.error_class is cls, str(info.value)
    return info.value


def assert_redacted(exc: BaseException, secrets: list[str]) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)
    text += repr(getattr(exc, "provider_code", ""))
    for s in secrets:
        assert s not in text, "secret leaked into exception text"


async def check_success(make: Make, emu: Emulator) -> JobStatus:
    async with make() as client:
        status = await run_job(client)
        assert status.state is JobState.SUCCEEDED, status
        assert await client.download(status) == FAKE_MP4
    return status


async def check_submit_error(make: Make, emu: Emulator, cls: ErrorClass, fault: tuple[int, Any, dict[str, str]]) -> TeacherError:
    status, body, headers = fault
    emu.inject("create", status, body, headers)
    async with make() as client:
        err = await expect(client.submit(REQUEST), cls)
    assert not getattr(err, "ambiguous", False)
    assert err.http_status == status
    if "Retry-After" in headers:
        assert err.retry_after_s == pytest.approx(float(headers["Retry-After"]), abs=1.0)
    return err


async def check_auth(make: Make, emu: Emulator, secrets: list[str], **bad_creds: Any) -> None:
    async with make(**bad_creds) as client:
        err = await expect(client.submit(REQUEST), ErrorClass.AUTH)
    assert_redacted(err, secrets)


async def check_content_rejected_job(make: Make, emu: Emulator) -> None:
    async with make() as client:
        status = await run_job(client, JobRequest(prompt="REJECT this prompt", seed=1))
    assert status.state is JobState.FAILED
    assert status.error_class is ErrorClass.CONTENT_REJECTED, status


async def check_concurrency_cap(make: Make, emu: Emulator) -> None:
    emu.max_inflight = 1
    async with make() as client:
        await client.submit(REQUEST)
        await expect(client.submit(JobRequest(prompt="second", seed=2)), ErrorClass.CONCURRENCY_FULL)


async def check_concurrency_queued(make: Make, emu: Emulator) -> None:
    """Providers that accept a job over the cap (Runway's THROTTLED) report it queued, with the concurrency class as a hint."""
    emu.max_inflight = 1
    async with make() as client:
        await client.submit(REQUEST)
        second = await client.submit(JobRequest(prompt="second", seed=2))
        status = await client.poll(second)
    assert status.state is JobState.QUEUED and status.error_class is ErrorClass.CONCURRENCY_FULL


async def check_poll_retry(make: Make, emu: Emulator) -> None:
    """A 503 on a poll is retried inside the adapter (GETs are idempotent)."""
    async with make() as client:
        handle = await client.submit(REQUEST)
        emu.inject("poll", 503, {"error": "busy"})
        status = await client.poll(handle)
        assert status.state in (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED)


async def check_ambiguous(make: Make, emu: Emulator, lookup: bool) -> None:
    emu.create_delay_s = 1.0
    since = time.time()
    async with make(timeout_s=0.25) as client:
        with pytest.raises(AmbiguousSubmitError) as info:
            await client.submit(REQUEST)
        err = info.value
        assert err.error_class is ErrorClass.TRANSIENT and err.ambiguous
        assert len(emu.jobs) == 1  # the provider did create it
        assert supports_find_job(client) is lookup
        if lookup:
            handle = await client.find_job(REQUEST, since=since)  # type: ignore[attr-defined]
            assert handle is not None and handle.job_id == next(iter(emu.jobs))
            other = JobRequest(prompt="never submitted", seed=3)
            assert await client.find_job(other, since=since) is None  # type: ignore[attr-defined]


async def check_expired(make: Make, emu: Emulator) -> None:
    async with make() as client:
        status = await run_job(client)
        emu.expire_results = True
        await expect(client.download(status), ErrorClass.EXPIRED_RESULT)


async def check_byte_cap(make: Make, emu: Emulator) -> None:
    async with make(max_bytes=100) as client:
        status = await run_job(client)
        err = await expect(client.download(status), ErrorClass.CORRUPT_RESULT)
        assert "max_bytes" in str(err)


async def check_cancel(make: Make, emu: Emulator) -> Optional[JobStatus]:
    emu.polls_to_finish = 100
    async with make() as client:
        handle = await client.submit(REQUEST)
        await client.cancel(handle)
        status = await client.poll(handle)
        assert status.state is JobState.CANCELLED, status
        return status


async def check_cancel_no_op(make: Make, emu: Emulator) -> None:
    """Providers without a cancel endpoint (Kling): cancel only logs, and the job runs on."""
    async with make() as client:
        handle = await client.submit(REQUEST)
        await client.cancel(handle)
        assert (await client.poll(handle)).state in (JobState.RUNNING, JobState.SUCCEEDED)
