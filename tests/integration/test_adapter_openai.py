"""OpenAI-style `/v1/videos` adapter against its emulator, through real sockets."""

from __future__ import annotations

import pytest
from emulators import harness as h
from emulators.openai import ERRORS, OpenAIVideosEmulator

from afd_async.teacher.adapters import make_client
from afd_async.teacher.contract import ErrorClass, JobHandle

pytestmark = pytest.mark.anyio
KEY = "sk-local-test-SECRET-4f9a2b"


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def emu():
    with OpenAIVideosEmulator(api_key=KEY) as e:
        yield e


@pytest.fixture()
def make(emu):
    emu.reset()

    def _make(api_key: str = KEY, **kw):
        args = dict(base_url=emu.url, credentials={"api_key": api_key}, timeout_s=5.0, model="local-physics", retry_wait_s=0.01)
        return make_client("openai", **{**args, **kw})

    return _make


async def test_success(make, emu):
    status = await h.check_success(make, emu)
    assert status.progress == 1.0
    assert emu.requests[0][2]["idempotency-key"].startswith("afd-")


@pytest.mark.parametrize("cls", list(ERRORS), ids=lambda c: c.value)
async def test_submit_error_classes(make, emu, cls):
    err = await h.check_submit_error(make, emu, cls, ERRORS[cls])
    h.assert_redacted(err, [KEY])


async def test_auth(make, emu):
    await h.check_auth(make, emu, [KEY, "sk-wrong-key-XYZ123"], api_key="sk-wrong-key-XYZ123")


async def test_content_rejected_job(make, emu):
    await h.check_content_rejected_job(make, emu)


async def test_concurrency_cap(make, emu):
    await h.check_concurrency_cap(make, emu)


async def test_poll_retry(make, emu):
    await h.check_poll_retry(make, emu)


async def test_ambiguous_submit_and_find_job(make, emu):
    await h.check_ambiguous(make, emu, lookup=True)


async def test_expired_result(make, emu):
    await h.check_expired(make, emu)


async def test_byte_cap(make, emu):
    await h.check_byte_cap(make, emu)


async def test_cancel(make, emu):
    await h.check_cancel(make, emu)


async def test_rate_limit_hint_http_date(make, emu):
    emu.inject("create", 429, {"error": {"code": "rate_limit", "message": "slow down"}}, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    async with make() as client:
        err = await h.expect(client.submit(h.REQUEST), ErrorClass.RATE_LIMITED)
    assert err.retry_after_s == 0.0  # a date in the past means "now"


async def test_key_echoed_by_server_is_redacted(make, emu, caplog):
    """A provider that echoes the credential in its error body must not leak it via us."""
    body = {"error": {"code": "invalid_api_key", "message": f"Incorrect API key provided: {KEY}. Header was 'Authorization: Bearer {KEY}'"}}
    emu.inject("create", 401, body)
    emu.inject("poll", 400, body)
    with caplog.at_level("DEBUG", logger="afd_async.teacher.adapters"):
        async with make() as client:
            err = await h.expect(client.submit(h.REQUEST), ErrorClass.AUTH)
            h.assert_redacted(err, [KEY])
            err2 = await h.expect(client.poll(JobHandle("openai", "job-x")), ErrorClass.AUTH)
            h.assert_redacted(err2, [KEY])
    assert caplog.text and KEY not in caplog.text
