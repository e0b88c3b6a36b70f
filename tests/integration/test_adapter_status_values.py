"""Provider status values are mapped exhaustively (issue 18.3): an unknown one is a counted, retried error.

Luma, Replicate, fal, Runway, Kling and Seedance adapters against their emulators: a poll that reads a
status outside the provider's documented set (or none) raises a TRANSIENT `TeacherError`
naming the value and logs it, and the job is untouched, so the next poll goes on. Through
the gateway, such polls are counted in `afd_teacher_actor_errors_total{error_class="transient"}`
and retried, and the job finishes with its one create.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from emulators import harness as h
from emulators.providers import PROVIDERS, anyio_backend, emu, make, provider_fixture  # noqa: F401

from afd_async.metrics import REGISTRY, bind
from afd_async.teacher.cache import TeacherCache
from afd_async.teacher.contract import ErrorClass, JobRequest, JobState
from afd_async.teacher.gateway import TeacherGateway
from afd_async.teacher.journal import SubmitJournal
from afd_async.teacher.quota import SharedQuota
from afd_async.video.clip import Clip
from afd_async.video.codec import decode_mp4, encode_mp4

pytestmark = pytest.mark.anyio
provider = provider_fixture("luma", "replicate", "fal", "runway", "kling", "volcengine")

# The status field of each provider's poll reply.
_FIELD = {"luma": "state", "replicate": "status", "fal": "status", "runway": "status", "kling": "task_status",
          "volcengine": "status"}
# A value each provider does not document; Replicate's is the one its emulator once sent.
UNKNOWN = {"luma": "paused", "replicate": "running", "fal": "FAILED", "runway": "QUEUED", "kling": "succeeded",
           "volcengine": "done"}


def _reply(name: str, job_id: str, value: Any) -> dict[str, Any]:
    """A poll reply of the provider's shape whose status field holds `value` (None: the field is absent)."""
    body: dict[str, Any] = {"id": job_id, "request_id": job_id, "task_id": job_id}
    if value is not None:
        body[_FIELD[name]] = value
    return {"code": 0, "message": "SUCCEED", "data": body} if name == "kling" else body


@pytest.mark.parametrize("missing", [False, True], ids=["unknown", "missing"])
async def test_unknown_status_is_a_transient_error_naming_it(make, emu, provider, caplog, missing: bool):
    value = None if missing else UNKNOWN[provider.client]
    async with make() as client:
        handle = await client.submit(h.REQUEST)
        emu.inject("poll", 200, _reply(provider.client, handle.job_id, value))
        with caplog.at_level(logging.WARNING, logger="afd_async.teacher.adapters"):
            err = await h.expect(client.poll(handle), ErrorClass.TRANSIENT)
        assert f"{_FIELD[provider.client]}={value!r}" in str(err) and handle.job_id in str(err)
        assert err.provider_code == f"unknown_{_FIELD[provider.client]}={value}"
        assert any(repr(value) in r.getMessage() for r in caplog.records), caplog.records
        assert sum(client.unknown_statuses.values()) == 1
        status = await client.poll(handle)  # the job is untouched: the next poll reads it as before
        assert status.state in (JobState.RUNNING, JobState.SUCCEEDED), status


def _errors(actor_id: str, cls: str) -> float:
    labels = {"role": "teacher-actor", "actor_id": actor_id, "error_class": cls}
    return REGISTRY.get_sample_value("afd_teacher_actor_errors_total", labels) or 0.0


async def test_gateway_counts_unknown_statuses_and_keeps_the_job(make, emu, provider, redis_server):
    frames = np.broadcast_to(np.arange(4, dtype=np.uint8)[:, None, None, None] * 60, (4, 16, 16, 3)).copy()
    emu.file_bytes = encode_mp4(Clip(frames=frames, fps=4.0))
    actor_id = f"ta-status-{provider.client}"
    metrics = bind("teacher-actor", actor_id)
    r = aioredis.Redis(**redis_server.client_kwargs())
    decode = functools.partial(decode_mp4, max_frames=16, max_pixels=32 * 32, max_bytes=1 << 20)
    async with make() as client:
        gw = TeacherGateway(client, SharedQuota(r, f"acct-{provider.client}", create_rate_per_min=6000.0, burst=10,
                                                max_in_flight=4, lease_ttl_s=5.0, aimd_cooldown_s=0.0),
                            SubmitJournal(r, claim_ttl_s=5.0, ambiguity_timeout_s=60.0), TeacherCache(r), decode,
                            poll_interval_s=0.01, poll_max_interval_s=0.05, retry_initial_s=0.01, retry_max_s=0.05,
                            submit_attempts=3, call_timeout_s=5.0, metrics=metrics)
        for _ in range(2):
            emu.inject("poll", 200, _reply(provider.client, "any", UNKNOWN[provider.client]))
        request = JobRequest(prompt=f"unknown statuses for {provider.client}", seed=1)
        entry = await gw.run_job(request)
    assert entry.clip.frames.shape == (4, 16, 16, 3)
    assert len(emu.jobs) == 1 and gw.counters.get("attempts_failed", 0) == 0  # one create, nothing resubmitted
    assert _errors(actor_id, "transient") == 2
    await r.aclose()
