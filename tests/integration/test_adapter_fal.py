"""fal specifics against its emulator (the contract checks are in test_adapter_contract.py)."""

from __future__ import annotations

import pytest
from emulators import harness as h
from emulators.fal import APP
from emulators.providers import anyio_backend, emu, make, provider_fixture  # noqa: F401

from afd_async.teacher.contract import ErrorClass, JobHandle

pytestmark = pytest.mark.anyio
provider = provider_fixture("fal")


async def test_key_never_sent_off_origin(make, emu):
    handle = JobHandle(provider="fal", job_id="x", model=APP, extra={"status_url": "https://evil.example/requests/x/status"})
    async with make() as client:
        await h.expect(client.poll(handle), ErrorClass.INVALID)
