"""OpenAI Videos specifics against its emulator (the contract checks are in test_adapter_contract.py; the SDK's own run in test_sdk_openai.py)."""

from __future__ import annotations

import pytest
from emulators import harness as h
from emulators.providers import OPENAI_KEY as KEY
from emulators.providers import anyio_backend, emu, make, provider_fixture  # noqa: F401

from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState

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


@pytest.mark.parametrize("status", ["cancelled", "expired", "running", None])
async def test_unknown_status_is_a_named_counted_error(make, emu, caplog, status):
    """`video.py`: status is queued|in_progress|completed|failed; anything else is never read as running."""
    async with make() as client:
        handle = await client.submit(h.REQUEST)
        emu.inject("poll", 200, {"id": handle.job_id, "object": "video", "status": status, "progress": 10})
        with caplog.at_level("WARNING", logger="afd_async.teacher.adapters"):
            err = await h.expect(client.poll(handle), ErrorClass.TRANSIENT)
        assert repr(status) in str(err) and err.provider_code == f"unknown_status={status}"
        assert client.unknown_statuses == {f"status={status!r}": 1} and repr(status) in caplog.text
        assert (await client.poll(handle)).state.value in ("running", "succeeded")  # the job is kept: polled again


async def test_create_is_multipart_like_the_sdk(make, emu):
    async with make() as client:
        await client.submit(JobRequest(prompt="a ball", seed=4, params={"seconds": "8", "size": "1280x720"}))
    async with make(send_seed=False) as client:
        await client.submit(JobRequest(prompt="no seed", seed=4))
    creates = [hdrs for method, path, hdrs in emu.requests if (method, path) == ("POST", "/v1/videos")]
    assert all(c["content-type"].startswith("multipart/form-data") for c in creates)
    seeded, unseeded = list(emu.jobs.values())
    assert seeded.body == {"prompt": "a ball", "model": "local-physics", "seed": "4", "seconds": "8", "size": "1280x720"}
    assert "seed" not in unseeded.body  # the hosted API takes no seed


async def test_a_deleted_video_polls_as_cancelled_not_as_an_error(make, emu):
    """`DELETE` removes a video; the next poll's 404 means nothing is left to wait for (HttpAdapter._get_job_json)."""
    async with make() as client:
        handle = await client.submit(h.REQUEST)
        emu.inject("poll", 404, {"error": {"code": "not_found", "message": "Video not found", "type": "invalid_request_error"}})
        status = await client.poll(handle)
        assert status.state is JobState.CANCELLED and status.error_message == "video not found (deleted)", status
        emu.inject("poll", 500, {"error": {"code": "server_error", "message": "boom"}})
        status = await client.poll(handle)  # any other error is not "deleted": retried, and the job is still there
        assert status.state is not JobState.CANCELLED, status
