"""Runway adapter against its emulator (version header, THROTTLED, failureCode)."""

from __future__ import annotations

import pytest
from emulators import harness as h
from emulators.runway import DAILY_LIMIT, ERRORS, VERSION, RunwayEmulator

from afd_async.teacher.adapters import make_client
from afd_async.teacher.contract import ErrorClass, JobRequest, JobState

pytestmark = pytest.mark.anyio
KEY = "key_TEST_runway_3c9d1e0f2a4b"


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def emu():
    with RunwayEmulator(api_key=KEY) as e:
        yield e


@pytest.fixture()
def make(emu):
    emu.reset()

    def _make(api_key: str = KEY, **kw):
        args = dict(base_url=emu.url, credentials={"api_key": api_key}, timeout_s=5.0, model="gen4.5", retry_wait_s=0.01)
        return make_client("runway", **{**args, **kw})

    return _make


async def test_success(make, emu):
    await h.check_success(make, emu)
    assert all(r[2]["x-runway-version"] == VERSION for r in emu.requests if not r[1].startswith("/files/"))
    body = next(iter(emu.jobs.values())).body
    assert body == {"model": "gen4.5", "promptText": h.REQUEST.prompt, "ratio": "1280:720", "duration": 5, "seed": 7}


async def test_image_to_video_route(make, emu):
    async with make() as client:
        await client.submit(JobRequest(prompt="pan left", params={"promptImage": "https://example.com/a.png"}))
    assert emu.requests[-1][1] == "/v1/image_to_video"


@pytest.mark.parametrize("cls", list(ERRORS), ids=lambda c: c.value)
async def test_submit_error_classes(make, emu, cls):
    err = await h.check_submit_error(make, emu, cls, ERRORS[cls])
    h.assert_redacted(err, [KEY])


async def test_daily_limit_is_quota(make, emu):
    emu.inject("create", *DAILY_LIMIT)
    async with make() as client:
        await h.expect(client.submit(h.REQUEST), ErrorClass.QUOTA_EXHAUSTED)


async def test_auth(make, emu):
    await h.check_auth(make, emu, [KEY, "key_WRONG_0000000000"], api_key="key_WRONG_0000000000")


async def test_safety_failure_is_content_rejected(make, emu):
    await h.check_content_rejected_job(make, emu)


async def test_throttled_is_queued_with_concurrency_hint(make, emu):
    emu.max_inflight = 1
    async with make() as client:
        await client.submit(h.REQUEST)
        second = await client.submit(JobRequest(prompt="second", seed=2))
        status = await client.poll(second)
    assert status.state is JobState.QUEUED and status.error_class is ErrorClass.CONCURRENCY_FULL


async def test_poll_retry(make, emu):
    await h.check_poll_retry(make, emu)


async def test_ambiguous_submit_no_lookup(make, emu):
    await h.check_ambiguous(make, emu, lookup=False)


async def test_expired_result(make, emu):
    await h.check_expired(make, emu)


async def test_byte_cap(make, emu):
    await h.check_byte_cap(make, emu)


async def test_cancel(make, emu):
    await h.check_cancel(make, emu)
