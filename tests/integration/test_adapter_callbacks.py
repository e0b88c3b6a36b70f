"""Adapters with completion callbacks: the create carries the receiver's URL in the provider's own field,
and the provider's callback body names the job (`callback_job_id`); a signed body carries its status.

Against each provider's emulator through real sockets (tests/emulators). fal's field is a query
parameter (`?fal_webhook=`), which the emulators do not record: only its body parsing is checked here.
"""

from __future__ import annotations

from typing import Any

import pytest
from emulators import harness as h
from emulators.providers import Provider, anyio_backend, emu, make, provider_fixture  # noqa: F401

from afd_async.teacher.adapters import make_client
from afd_async.teacher.callbacks import supports_callbacks
from afd_async.teacher.contract import JobState

pytestmark = pytest.mark.anyio
provider = provider_fixture("replicate", "luma", "kling", "openai")
URL = "http://127.0.0.1:9/teacher-callback/tok-Zq8rW1e4Xy7uVb2NcM5kP0sD"

FIELD = {"replicate": "webhook", "luma": "callback_url", "kling": "callback_url", "openai": "webhook"}


def callback_body(provider: str, job_id: str) -> dict[str, Any]:
    """The provider's documented callback body for a finished job (the fields we read)."""
    return {"replicate": {"id": job_id, "status": "succeeded", "output": ["https://replicate.delivery/x/out.mp4"]},
            "luma": {"id": job_id, "state": "completed", "assets": {"video": "https://cdn.luma/x.mp4"}},
            "kling": {"task_id": job_id, "task_status": "succeed"},
            "openai": {"type": "video.completed", "data": {"id": job_id}}}[provider]


async def test_create_carries_the_callback_url_and_the_callback_names_the_job(make, emu, provider: Provider):
    async with make(callback_url=URL) as client:
        assert supports_callbacks(client)
        handle = await client.submit(h.REQUEST)
        body = next(iter(emu.jobs.values())).body
        assert body[FIELD[provider.client]] == URL
        if provider.client == "replicate":
            assert body["webhook_events_filter"] == ["completed"]
        cb = callback_body(provider.client, handle.job_id)
        assert client.callback_job_id(cb) == handle.job_id
        assert client.callback_job_id({"unrelated": 1}) is None
        status = client.callback_status(handle, cb)
        if provider.client == "replicate":  # signed: the prediction object is the status
            assert status is not None and status.state is JobState.SUCCEEDED
            assert status.result_url == "https://replicate.delivery/x/out.mp4"
        else:  # unsigned (luma, kling) or id-only (hosted openai): the callback only wakes a poll
            assert status is None
        assert "tok-Zq8rW1e4Xy7uVb2NcM5kP0sD" not in client.redact(f"POST {URL} failed")  # the token is a secret


async def test_without_a_callback_url_the_create_carries_none(make, emu, provider: Provider):
    async with make() as client:
        await client.submit(h.REQUEST)
        assert FIELD[provider.client] not in next(iter(emu.jobs.values())).body


async def test_fal_callback_body_names_the_request_and_only_wakes_a_poll():
    client = make_client("fal", base_url="http://127.0.0.1:9", credentials={"api_key": "fal-key-0123456789"},
                         model="fal-ai/x", callback_url=URL)
    try:
        assert client.callback_job_id({"request_id": "req-1", "status": "OK", "payload": {}}) == "req-1"
        assert client.callback_status(None, {"request_id": "req-1"}) is None  # type: ignore[arg-type]
    finally:
        await client.aclose()
