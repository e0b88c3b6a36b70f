"""Seedance adapter (Volcengine Ark and BytePlus ModelArk) against its emulator."""

from __future__ import annotations

import time

import pytest
from emulators import harness as h
from emulators.seedance import ERRORS, SAFE_MODE_CAP, SeedanceEmulator

from afd_async.teacher.adapters import AmbiguousSubmitError, make_client, supports_find_job
from afd_async.teacher.contract import ErrorClass, JobState

pytestmark = pytest.mark.anyio
KEY = "ark-TEST-KEY-5b7e0c2d-91aa"


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def emu():
    with SeedanceEmulator(api_key=KEY) as e:
        yield e


@pytest.fixture(params=["volcengine", "byteplus"])
def make(emu, request):
    emu.reset()
    emu.echo_content = False

    def _make(api_key: str = KEY, **kw):
        args = dict(base_url=emu.base_url, credentials={"api_key": api_key}, timeout_s=5.0, model="seedance-1-0-pro-250528", retry_wait_s=0.01)
        return make_client(request.param, **{**args, **kw})

    return _make


async def test_success(make, emu):
    status = await h.check_success(make, emu)
    assert status.usage["total_tokens"] == 108900
    text = next(iter(emu.jobs.values())).body["content"][0]["text"]
    assert text == f"{h.REQUEST.prompt} --seed 7"


@pytest.mark.parametrize("cls", list(ERRORS), ids=lambda c: c.value)
async def test_submit_error_classes(make, emu, cls):
    err = await h.check_submit_error(make, emu, cls, ERRORS[cls])
    h.assert_redacted(err, [KEY])


async def test_safe_mode_cap_is_quota(make, emu):
    emu.inject("create", *SAFE_MODE_CAP)
    async with make() as client:
        await h.expect(client.submit(h.REQUEST), ErrorClass.QUOTA_EXHAUSTED)


async def test_auth(make, emu):
    await h.check_auth(make, emu, [KEY, "ark-WRONG-key-000000"], api_key="ark-WRONG-key-000000")


async def test_content_rejected_job(make, emu):
    await h.check_content_rejected_job(make, emu)


async def test_queued_task_cap_is_concurrency_full(make, emu):
    await h.check_concurrency_cap(make, emu)


async def test_poll_retry(make, emu):
    await h.check_poll_retry(make, emu)


async def test_ambiguous_submit_never_guessed(make, emu):
    """Ark lists tasks without prompts: no find_job (None would mean "safe to resubmit"); recent_jobs shows the orphan."""
    emu.create_delay_s = 1.0
    since = time.time()
    async with make(timeout_s=0.25) as client:
        with pytest.raises(AmbiguousSubmitError):
            await client.submit(h.REQUEST)
        assert not supports_find_job(client)
        assert await client.match_listed(h.REQUEST, since=since) is None
        orphans = await client.recent_jobs(since=since)
        assert [o["id"] for o in orphans] == list(emu.jobs)
        emu.echo_content = True  # a deployment that echoes the request text is matched exactly
        found = await client.match_listed(h.REQUEST, since=since)
        assert found is not None and found.job_id in emu.jobs


async def test_expired_result(make, emu):
    await h.check_expired(make, emu)


async def test_byte_cap(make, emu):
    await h.check_byte_cap(make, emu)


async def test_cancel(make, emu):
    status = await h.check_cancel(make, emu)
    assert status is not None and status.state is JobState.CANCELLED
