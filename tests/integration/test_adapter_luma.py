"""Luma adapter against its emulator, through real sockets."""

from __future__ import annotations

import pytest
from emulators import harness as h
from emulators.luma import ERRORS, LumaEmulator

from afd_async.teacher.adapters import make_client

pytestmark = pytest.mark.anyio
KEY = "luma-TEST-key-8d2c4b6a0e1f"


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def emu():
    with LumaEmulator(api_key=KEY) as e:
        yield e


@pytest.fixture()
def make(emu):
    emu.reset()

    def _make(api_key: str = KEY, **kw):
        args = dict(base_url=emu.base_url, credentials={"api_key": api_key}, timeout_s=5.0, model="ray-2", retry_wait_s=0.01)
        return make_client("luma", **{**args, **kw})

    return _make


async def test_success(make, emu):
    await h.check_success(make, emu)
    assert next(iter(emu.jobs.values())).body == {"prompt": h.REQUEST.prompt, "model": "ray-2"}


@pytest.mark.parametrize("cls", list(ERRORS), ids=lambda c: c.value)
async def test_submit_error_classes(make, emu, cls):
    err = await h.check_submit_error(make, emu, cls, ERRORS[cls])
    h.assert_redacted(err, [KEY])


async def test_auth(make, emu):
    await h.check_auth(make, emu, [KEY, "luma-WRONG-key-0000"], api_key="luma-WRONG-key-0000")


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


async def test_cancel_deletes(make, emu):
    status = await h.check_cancel(make, emu)
    assert status is not None and "deleted" in (status.error_message or "")
