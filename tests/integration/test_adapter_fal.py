"""fal queue adapter against its emulator, through real sockets."""

from __future__ import annotations

import pytest
from emulators import harness as h
from emulators.fal import APP, ERRORS, FalEmulator

from afd_async.teacher.adapters import make_client
from afd_async.teacher.contract import ErrorClass, JobHandle

pytestmark = pytest.mark.anyio
KEY = "fal-TEST-1a2b3c4d:5e6f7a8b9c0d"


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def emu():
    with FalEmulator(api_key=KEY) as e:
        yield e


@pytest.fixture()
def make(emu):
    emu.reset()

    def _make(api_key: str = KEY, **kw):
        args = dict(base_url=emu.url, credentials={"api_key": api_key}, timeout_s=5.0, model=APP, retry_wait_s=0.01)
        return make_client("fal", **{**args, **kw})

    return _make


async def test_success(make, emu):
    await h.check_success(make, emu)
    assert emu.requests[0][2]["authorization"] == f"Key {KEY}"
    assert next(iter(emu.jobs.values())).body == {"prompt": h.REQUEST.prompt, "seed": 7}


@pytest.mark.parametrize("cls", list(ERRORS), ids=lambda c: c.value)
async def test_submit_error_classes(make, emu, cls):
    err = await h.check_submit_error(make, emu, cls, ERRORS[cls])
    h.assert_redacted(err, [KEY])


async def test_auth(make, emu):
    await h.check_auth(make, emu, [KEY, "fal-WRONG:000000000"], api_key="fal-WRONG:000000000")


async def test_content_rejected_job(make, emu):
    await h.check_content_rejected_job(make, emu)


async def test_concurrency_cap(make, emu):
    await h.check_concurrency_cap(make, emu)


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


async def test_key_never_sent_off_origin(make, emu):
    handle = JobHandle(provider="fal", job_id="x", model=APP, extra={"status_url": "https://evil.example/requests/x/status"})
    async with make() as client:
        await h.expect(client.poll(handle), ErrorClass.INVALID)
