"""Seedance specifics (Volcengine Ark and BytePlus ModelArk) against its emulator;
the contract checks, safe-mode cap included, are in test_adapter_contract.py."""

from __future__ import annotations

import time

import pytest
from emulators import harness as h
from emulators.providers import anyio_backend, emu, make, provider_fixture  # noqa: F401

from afd_async.teacher.adapters import AmbiguousSubmitError, supports_find_job

pytestmark = pytest.mark.anyio
provider = provider_fixture("volcengine", "byteplus")


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
