"""OpenAI-style `/v1/videos` specifics against its emulator (the contract checks are in test_adapter_contract.py)."""

from __future__ import annotations

import pytest
from emulators import harness as h
from emulators.providers import OPENAI_KEY as KEY
from emulators.providers import anyio_backend, emu, make, provider_fixture  # noqa: F401

from afd_async.teacher.contract import ErrorClass, JobHandle

pytestmark = pytest.mark.anyio
provider = provider_fixture("openai")


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
