"""The official `openai` SDK, unmodified, against `afd teacher-server` and the OpenAI emulator (issue 18.1).

Each scenario runs on both servers, on loopback: the teacher server as its role
builds it (`start_teacher_server`, physics backend, in this process) and
`tests/emulators/openai.py` serving a real MP4. The SDK is pointed at them
with `base_url` only. Then our own adapter runs the same scenario against the
same servers. Polls wait on a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from dataclasses import dataclass
from typing import Any, Iterator

import av
import numpy as np
import openai
import pytest
from emulators.openai import OpenAIVideosEmulator
from emulators.providers import anyio_backend  # noqa: F401  (pytest fixture)
from PIL import Image

from afd_async.config.load import load_config
from afd_async.teacher.adapters import make_client
from afd_async.teacher.contract import JobRequest, JobState, JobStatus
from afd_async.teacher.server_role import start_teacher_server
from afd_async.video.clip import Clip
from afd_async.video.codec import encode_mp4

# The SDK marks the Videos API deprecated (shutdown announced); the contract is what is under test.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")

KEY = "sk-sdk-contract-TEST-7e3f9a1c"
PROMPT = "a red ball falls from the top and bounces twice"  # inside the physics grammar
DEADLINE_S = 60.0


@dataclass
class Target:
    """One server under test: its `/v1` root and how to read what it is."""

    name: str
    url: str  # scheme://host:port, no /v1
    emulator: OpenAIVideosEmulator | None = None

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=KEY, max_retries=0, timeout=30.0)


@contextlib.contextmanager
def teacher_server() -> Iterator[Target]:
    """`afd teacher-server` in this process, as the role builds it from config (a small, fast renderer)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AFD_TEACHER_API_KEY", KEY)
        cfg = load_config(["cluster.teacher_server_port=0", "cluster.metrics_port=0", "teacher.renderer.height=32",
                           "teacher.renderer.width=48", "teacher.renderer.fps=8", "teacher.renderer.seconds=1",
                           "teacher.server.render_latency_s=0.05"])
        handle, stop = start_teacher_server(cfg, port=0)
    try:
        yield Target("teacher-server", handle.url)
    finally:
        stop.set()
        handle.stop()


@contextlib.contextmanager
def emulator() -> Iterator[Target]:
    frames = np.zeros((6, 32, 48, 3), np.uint8)
    frames[:, 8:24, 16:32] = 200
    with OpenAIVideosEmulator(api_key=KEY) as emu:
        emu.file_bytes = encode_mp4(Clip(frames=frames, fps=8.0))
        yield Target("emulator", emu.url, emu)


@pytest.fixture(params=["teacher-server", "emulator"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    with (teacher_server() if request.param == "teacher-server" else emulator()) as t:
        yield t


def wait_done(client: openai.OpenAI, video_id: str) -> Any:
    """`videos.retrieve` until completed or failed (the deadline fails the test)."""
    deadline = time.monotonic() + DEADLINE_S
    while (video := client.videos.retrieve(video_id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, f"video {video_id} stuck {video.status}"
        time.sleep(0.02)
    return video


def mp4_frames(data: bytes) -> int:
    """Frames PyAV decodes from the bytes."""
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


# ---- the SDK ------------------------------------------------------------------------------------


def test_sdk_create_poll_download_decodes(target: Target) -> None:
    client = target.sdk()
    video = client.videos.create(prompt=PROMPT)  # multipart/form-data, as the SDK always sends it
    assert video.object == "video" and video.status == "queued" and video.progress == 0
    assert video.model == "sora-2" and isinstance(video.seconds, str) and isinstance(video.created_at, int)
    assert video.remixed_from_video_id is None and video.error is None
    if target.emulator is not None:
        sent = [h for m, p, h in target.emulator.requests if m == "POST" and p == "/v1/videos"]
        assert sent[-1]["content-type"].startswith("multipart/form-data")
    else:  # the server's defaults are its renderer's, and it renders what it says
        assert (video.seconds, video.size) == ("1", "48x32")
    done = wait_done(client, video.id)
    assert done.status == "completed" and done.progress == 100 and done.completed_at >= done.created_at
    assert done.expires_at is not None and done.expires_at > done.completed_at
    data = client.videos.download_content(video.id).read()
    assert mp4_frames(data) > 0


def test_sdk_list_auto_paginates(target: Target) -> None:
    client = target.sdk()
    ids = [client.videos.create(prompt=PROMPT, seconds="4").id for _ in range(3)]
    first = client.videos.list(limit=1)
    assert len(first.data) == 1 and first.has_next_page()
    assert [v.id for v in client.videos.list(limit=1)] == ids[::-1]  # every page, newest first
    assert [v.id for v in client.videos.list(limit=1, order="asc")] == ids


def test_sdk_delete(target: Target) -> None:
    client = target.sdk()
    finished = client.videos.create(prompt=PROMPT).id
    wait_done(client, finished)
    queued = client.videos.create(prompt=PROMPT).id  # a live job: deleted too (the teacher server cancels it first)
    for video_id in (finished, queued):
        deleted = client.videos.delete(video_id)
        assert (deleted.id, deleted.object, deleted.deleted) == (video_id, "video.deleted", True)
        with pytest.raises(openai.NotFoundError):
            client.videos.retrieve(video_id)
    assert [v.id for v in client.videos.list()] == []


def test_sdk_thumbnail_and_spritesheet_are_images(target: Target) -> None:
    client = target.sdk()
    video_id = client.videos.create(prompt=PROMPT).id
    wait_done(client, video_id)
    thumb = Image.open(io.BytesIO(client.videos.download_content(video_id, variant="thumbnail").read()))
    sheet = Image.open(io.BytesIO(client.videos.download_content(video_id, variant="spritesheet").read()))
    assert (thumb.format, sheet.format) == ("WEBP", "JPEG") and thumb.size[0] > 0
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.download_content(video_id, variant="gif")  # type: ignore[arg-type]
    assert info.value.body["param"] == "variant"  # type: ignore[index]


# ---- our adapter, the same scenario -------------------------------------------------------------


async def finish(c: Any, handle: Any) -> JobStatus:
    deadline = time.monotonic() + DEADLINE_S
    while not (status := await c.poll(handle)).state.terminal:
        assert time.monotonic() < deadline, f"job stuck in {status.state}"
        await asyncio.sleep(0.02)
    return status


@pytest.mark.anyio
async def test_adapter_same_scenario(target: Target) -> None:
    # Distinct prompts: the emulator, like the hosted API, lists no seed, so find_job matches prompt and model.
    prompts = (PROMPT, "a blue ball slides left", "a red ball falls")
    requests = [JobRequest(prompt=p, seed=i) for i, p in enumerate(prompts)]
    async with make_client("openai", base_url=target.url, credentials={"api_key": KEY}, model="sora-2",
                           timeout_s=10.0, retry_wait_s=0.01) as c:
        handles = [await c.submit(r) for r in requests]
        status = await finish(c, handles[0])
        assert status.state is JobState.SUCCEEDED and status.progress == 1.0
        assert status.usage["seconds"] > 0 and "x" in status.usage["size"]
        assert mp4_frames(await c.download(status)) > 0
        found = await c.find_job(requests[0], limit=1)  # the oldest of three: found on the third page
        assert found is not None and found.job_id == handles[0].job_id
        await c.cancel(handles[2])  # DELETE
        assert (await c.poll(handles[2])).state is JobState.CANCELLED
        await c.cancel(handles[2])  # already gone: not an error
        assert c.unknown_statuses == {}
