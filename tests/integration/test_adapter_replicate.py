"""Replicate specifics against its emulator (version route, retry_after in the body, prediction lookup);
the contract checks are in test_adapter_contract.py."""

from __future__ import annotations

import pytest
from emulators import harness as h
from emulators.providers import anyio_backend, emu, make, provider_fixture  # noqa: F401
from emulators.replicate import ERRORS, MODEL

from afd_async.teacher.contract import ErrorClass, JobRequest

pytestmark = pytest.mark.anyio
provider = provider_fixture("replicate")


async def test_version_route(make, emu):
    async with make(model=f"{MODEL}:abc123") as client:
        await client.submit(h.REQUEST)
    assert emu.requests[-1][1] == "/v1/predictions"
    assert next(iter(emu.jobs.values())).body["version"] == "abc123"


async def test_retry_after_from_body(make, emu):
    emu.inject("create", *ERRORS[ErrorClass.RATE_LIMITED])
    async with make() as client:
        err = await h.expect(client.submit(h.REQUEST), ErrorClass.RATE_LIMITED)
    assert err.retry_after_s == 2.0


async def test_find_job_when_list_omits_input(make, emu):
    emu.list_inputs = False
    await h.check_ambiguous(make, emu, lookup=True)


async def test_find_job_skips_failed_attempts(make, emu):
    req = JobRequest(prompt="REJECT me", seed=5)
    async with make() as client:
        status = await h.run_job(client, req)
        assert status.error_class is ErrorClass.CONTENT_REJECTED
        assert await client.find_job(req) is None
