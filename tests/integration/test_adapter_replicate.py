"""Replicate adapter against its emulator (Cancel-After, retry_after in body)."""

from __future__ import annotations

import pytest
from emulators import harness as h
from emulators.replicate import ERRORS, MODEL, ReplicateEmulator

from afd_async.teacher.adapters import make_client
from afd_async.teacher.contract import ErrorClass

pytestmark = pytest.mark.anyio
KEY = "r8_TEST0123456789abcdefABCDEF"


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def emu():
    with ReplicateEmulator(api_key=KEY) as e:
        yield e


@pytest.fixture()
def make(emu):
    emu.reset()
    emu.list_inputs = True

    def _make(api_key: str = KEY, **kw):
        args = dict(base_url=emu.base_url, credentials={"api_key": api_key}, timeout_s=5.0, model=MODEL, retry_wait_s=0.01, cancel_after="10m")
        return make_client("replicate", **{**args, **kw})

    return _make


async def test_success(make, emu):
    status = await h.check_success(make, emu)
    assert status.usage == {"predict_time": 41.5}
    job = next(iter(emu.jobs.values()))
    assert job.model == MODEL and job.body["cancel_after"] == "10m"
    assert job.body["input"] == {"prompt": h.REQUEST.prompt, "seed": 7}


async def test_version_route(make, emu):
    async with make(model=f"{MODEL}:abc123") as client:
        await client.submit(h.REQUEST)
    assert emu.requests[-1][1] == "/v1/predictions"
    assert next(iter(emu.jobs.values())).body["version"] == "abc123"


@pytest.mark.parametrize("cls", list(ERRORS), ids=lambda c: c.value)
async def test_submit_error_classes(make, emu, cls):
    err = await h.check_submit_error(make, emu, cls, ERRORS[cls])
    h.assert_redacted(err, [KEY])


async def test_retry_after_from_body(make, emu):
    emu.inject("create", *ERRORS[ErrorClass.RATE_LIMITED])
    async with make() as client:
        err = await h.expect(client.submit(h.REQUEST), ErrorClass.RATE_LIMITED)
    assert err.retry_after_s == 2.0


async def test_auth(make, emu):
    await h.check_auth(make, emu, [KEY, "r8_WRONG000000000000"], api_key="r8_WRONG000000000000")


async def test_content_rejected_job(make, emu):
    await h.check_content_rejected_job(make, emu)


async def test_concurrency_cap(make, emu):
    await h.check_concurrency_cap(make, emu)


async def test_poll_retry(make, emu):
    await h.check_poll_retry(make, emu)


async def test_ambiguous_submit_and_find_job(make, emu):
    await h.check_ambiguous(make, emu, lookup=True)


async def test_find_job_when_list_omits_input(make, emu):
    emu.list_inputs = False
    await h.check_ambiguous(make, emu, lookup=True)


async def test_find_job_skips_failed_attempts(make, emu):
    from afd_async.teacher.contract import JobRequest

    req = JobRequest(prompt="REJECT me", seed=5)
    async with make() as client:
        status = await h.run_job(client, req)
        assert status.error_class is ErrorClass.CONTENT_REJECTED
        assert await client.find_job(req) is None


async def test_expired_result(make, emu):
    await h.check_expired(make, emu)


async def test_byte_cap(make, emu):
    await h.check_byte_cap(make, emu)


async def test_cancel(make, emu):
    await h.check_cancel(make, emu)
