"""The teacher job contract, checked for every provider adapter against its emulator through real sockets.

Rows and their provider-specific data live in `tests/emulators/providers.py`;
the checks in `tests/emulators/harness.py`. What only one provider does is
tested in its own `test_adapter_<provider>.py`.
"""

from __future__ import annotations

import pytest
from emulators import harness as h
from emulators.providers import PROVIDERS, Provider, anyio_backend, emu, make, provider_fixture, submit_fault, submit_faults  # noqa: F401

pytestmark = pytest.mark.anyio
provider = provider_fixture(*PROVIDERS)


async def test_success(make, emu, provider: Provider):
    status = await h.check_success(make, emu)
    provider.on_success(status, emu)


@pytest.mark.parametrize(("provider", "fault_id"), submit_faults(), indirect=["provider"])
async def test_submit_error(make, emu, provider: Provider, fault_id: str):
    cls, fault = submit_fault(provider, fault_id)
    err = await h.check_submit_error(make, emu, cls, fault)
    h.assert_redacted(err, provider.secrets)


async def test_auth(make, emu, provider: Provider):
    await h.check_auth(make, emu, provider.secrets + list(provider.bad_credentials.values()), **provider.bad_credentials)


async def test_content_rejected_job(make, emu):
    await h.check_content_rejected_job(make, emu)


async def test_concurrency_cap(make, emu, provider: Provider):
    if provider.concurrency == "queue":
        await h.check_concurrency_queued(make, emu)
    else:
        await h.check_concurrency_cap(make, emu)


async def test_poll_retry(make, emu):
    await h.check_poll_retry(make, emu)


async def test_ambiguous_submit(make, emu, provider: Provider):
    await h.check_ambiguous(make, emu, lookup=provider.lookup)


async def test_expired_result(make, emu):
    await h.check_expired(make, emu)


async def test_byte_cap(make, emu):
    await h.check_byte_cap(make, emu)


async def test_cancel(make, emu, provider: Provider):
    if provider.cancel == "no_op":
        await h.check_cancel_no_op(make, emu)
        return
    status = await h.check_cancel(make, emu)
    if provider.cancel_message is not None:
        assert status is not None and provider.cancel_message in (status.error_message or "")
