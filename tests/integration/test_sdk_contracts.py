"""Our provider emulators against the providers' official Python SDKs, unmodified (issue 18.4).

Each SDK is pointed at its emulator on a free loopback port through its base-URL option and
drives create → poll → result → download, and the file decodes with PyAV; then our adapter
runs the same scenario against the same emulator instance. The Stainless-generated clients
(lumaai, runwayml) run with `_strict_response_validation=True`, and Seedance's `volcenginesdkarkruntime.Ark`
parses every reply into its pydantic task types; so every reply is validated
against the SDK's response types, not just read leniently; replicate-python validates its
`Prediction` with pydantic anyway, and fal-client parses the status by hand (`KeyError` on a
missing field, `ValueError` on an unknown status). Statuses come from the SDKs' own types in
`test_sdk_status_sets_match_the_adapters`.

The SDKs block, so the SDK tests are synchronous; the emulators serve from their own threads.
No test sleeps to synchronise: an emulator job advances one lifecycle step per poll.
"""

from __future__ import annotations

import io
import typing
from datetime import datetime, timezone
from typing import Any, Iterator

import av
import fal_client
import httpx
import lumaai
import numpy as np
import pytest
import replicate
import runwayml
import volcenginesdkarkruntime
from emulators import fal as fal_emu
from emulators import luma as luma_emu
from emulators import replicate as replicate_emu
from emulators import runway as runway_emu
from emulators.base import Emulator
from emulators.providers import ARK_KEY, FAL_KEY, LUMA_KEY, PROVIDERS, REPLICATE_KEY, RUNWAY_KEY, Provider
from lumaai.types import Generation
from runwayml.types import TaskRetrieveResponse

from afd_async.teacher.adapters import fal as fal_adapter
from afd_async.teacher.adapters import luma as luma_adapter
from afd_async.teacher.adapters import replicate as replicate_adapter
from afd_async.teacher.adapters import runway as runway_adapter
from afd_async.teacher.contract import JobRequest, JobState
from afd_async.video.clip import Clip
from afd_async.video.codec import encode_mp4

PROMPT = "a red ball falls and bounces twice"
MAX_POLLS = 10


@pytest.fixture(scope="module")
def mp4() -> bytes:
    """A real 8-frame H.264 MP4 (32x32), served as every job's result file."""
    t = np.arange(8, dtype=np.uint8)[:, None, None, None]
    return encode_mp4(Clip(frames=np.broadcast_to(t * 30, (8, 32, 32, 3)).copy(), fps=8.0))


def decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


def download(url: str) -> bytes:
    """The result file, fetched as the providers' docs do it (a plain GET of the signed URL, no credentials)."""
    resp = httpx.get(url, timeout=5.0)
    resp.raise_for_status()
    return resp.content


@pytest.fixture(scope="module", params=["luma", "replicate", "fal", "runway", "volcengine"])
def provider(request: pytest.FixtureRequest) -> Provider:
    return PROVIDERS[request.param]


@pytest.fixture(scope="module")
def emu(provider: Provider, mp4: bytes) -> Iterator[Emulator]:
    """One emulator per provider, shared by its SDK test and its adapter test."""
    with provider.emulator() as e:
        e.file_bytes = mp4
        yield e


# -- the SDKs, one scenario each ---------------------------------------------------------------
def luma_sdk(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> bytes:
    client = lumaai.LumaAI(auth_token=LUMA_KEY, base_url=emu.base_url, max_retries=0, _strict_response_validation=True)
    gen = client.generations.create(model="ray-2", prompt=PROMPT)
    assert (gen.state, gen.generation_type, gen.model) == ("queued", "video", "ray-2")
    assert emu.requests[-1][:2] == ("POST", "/dream-machine/v1/generations/video")
    for _ in range(MAX_POLLS):
        gen = client.generations.get(gen.id)
        if gen.state in ("completed", "failed"):
            break
    assert gen.state == "completed" and gen.assets is not None and gen.assets.video, gen
    assert any(g.id == gen.id for g in client.generations.list(limit=10).generations)
    return download(gen.assets.video)


def replicate_sdk(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> bytes:
    client = replicate.Client(api_token=REPLICATE_KEY, base_url=emu.url)
    pred = client.models.predictions.create(model=replicate_emu.MODEL, input={"prompt": PROMPT, "seed": 7})
    assert pred.status == "starting" and emu.waits[-1] is None
    for _ in range(MAX_POLLS):
        pred.reload()
        if pred.status in ("succeeded", "failed", "canceled"):
            break
    assert pred.status == "succeeded" and pred.completed_at and pred.metrics, pred
    return download(pred.output)


def fal_sdk(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> bytes:
    # fal-client 1.0.3 cannot point at a local host: it builds every submit URL from the module
    # constant QUEUE_URL_FORMAT = f"https://{FAL_QUEUE_RUN_HOST}/", fixed at import
    # (fal_client/client.py). Only that constant's scheme and host are patched here; status,
    # response and cancel then go to the URLs the emulator returned, as against fal.
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{emu.url}/")
    client = fal_client.SyncClient(key=FAL_KEY)
    handle = client.submit(fal_emu.APP, arguments={"prompt": PROMPT, "seed": 7})
    seen: list[Any] = []
    for _ in range(MAX_POLLS):
        seen.append(handle.status(with_logs=True))
        if isinstance(seen[-1], fal_client.Completed):
            break
    assert isinstance(seen[-1], fal_client.Completed) and seen[-1].error is None, seen
    assert any(isinstance(s, fal_client.InProgress) and s.logs for s in seen), seen
    assert isinstance(client.status(fal_emu.APP, handle.request_id), fal_client.Completed)  # logs: null
    result = handle.get()
    return download(result["video"]["url"])


def runway_sdk(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> bytes:
    client = runwayml.RunwayML(api_key=RUNWAY_KEY, base_url=emu.url, max_retries=0, _strict_response_validation=True)
    created = client.text_to_video.create(model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5, seed=7)
    seen: list[Any] = []
    for _ in range(MAX_POLLS):
        seen.append(client.tasks.retrieve(created.id))
        if seen[-1].status in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
    task = seen[-1]
    assert task.status == "SUCCEEDED" and task.cost.credits == runway_emu.CREDITS_PER_SECOND * 5, task
    assert any(t.status == "RUNNING" and t.estimated_cost.credits > 0 for t in seen), seen
    assert abs((datetime.now(timezone.utc) - task.created_at).total_seconds()) < 60  # when it was submitted
    return download(task.output[0])


def seedance_sdk(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> bytes:
    client = volcenginesdkarkruntime.Ark(base_url=emu.base_url, api_key=ARK_KEY, max_retries=0)
    tasks = client.content_generation.tasks
    created = tasks.create(model="seedance-1-0-pro-250528", content=[{"type": "text", "text": f"{PROMPT} --seed 7"}])
    assert emu.requests[-1][:2] == ("POST", "/api/v3/contents/generations/tasks")
    seen: list[Any] = []
    for _ in range(MAX_POLLS):
        seen.append(tasks.get(task_id=created.id))
        if seen[-1].status in ("succeeded", "failed", "cancelled", "expired"):
            break
    task = seen[-1]
    assert task.status == "succeeded" and task.content.video_url and task.usage.total_tokens > 0, task
    assert any(t.id == created.id for t in tasks.list(page_size=10).items)
    return download(task.content.video_url)


SDKS = {"luma": (luma_sdk, lumaai), "replicate": (replicate_sdk, replicate), "fal": (fal_sdk, fal_client),
        "runway": (runway_sdk, runwayml), "volcengine": (seedance_sdk, volcenginesdkarkruntime)}


def test_official_sdk_drives_the_emulator(provider: Provider, emu: Emulator, monkeypatch: pytest.MonkeyPatch):
    scenario, _ = SDKS[provider.client]
    data = scenario(emu, monkeypatch)
    assert decoded_frames(data) == 8


@pytest.mark.anyio
async def test_adapter_runs_the_same_scenario(provider: Provider, emu: Emulator, anyio_backend: str):
    async with provider.make(emu) as client:
        handle = await client.submit(JobRequest(prompt=PROMPT, seed=7))
        for _ in range(MAX_POLLS):
            status = await client.poll(handle)
            if status.state.terminal:
                break
        assert status.state is JobState.SUCCEEDED, status
        assert decoded_frames(await client.download(status)) == 8


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


# -- what only one provider does -----------------------------------------------------------------
@pytest.fixture()
def replicate_emulator(mp4: bytes) -> Iterator[replicate_emu.ReplicateEmulator]:
    with replicate_emu.ReplicateEmulator(api_key=REPLICATE_KEY) as e:
        e.file_bytes = mp4
        yield e


def test_replicate_prefer_wait_holds_the_create_until_done(replicate_emulator):
    client = replicate.Client(api_token=REPLICATE_KEY, base_url=replicate_emulator.url)
    pred = client.models.predictions.create(model=replicate_emu.MODEL, input={"prompt": PROMPT}, wait=30)
    assert pred.status == "succeeded" and pred.output, pred
    output = client.run(replicate_emu.MODEL, input={"prompt": PROMPT})  # run() sends `Prefer: wait`
    assert decoded_frames(download(str(output))) == 8
    assert replicate_emulator.waits == [30, 60]


def test_replicate_prefer_wait_answers_the_prediction_as_it_is_after_n_seconds(replicate_emulator):
    replicate_emulator.polls_to_finish = 10**6
    replicate_emulator.wait_step_s = 0.1
    client = replicate.Client(api_token=REPLICATE_KEY, base_url=replicate_emulator.url)
    pred = client.models.predictions.create(model=replicate_emu.MODEL, input={"prompt": PROMPT}, wait=1)
    assert pred.status == "processing" and pred.output is None, pred
    client.predictions.cancel(pred.id)
    pred.reload()
    assert pred.status == "canceled"


@pytest.mark.parametrize("header", ["wait=0", "wait=61", "respond-async", "wait=abc"])
def test_replicate_ignores_prefer_values_it_does_not_support(header):
    assert replicate_emu.prefer_wait_s(header) is None


@pytest.mark.anyio
async def test_replicate_adapter_with_prefer_wait(replicate_emulator, anyio_backend: str):
    p = PROVIDERS["replicate"]
    async with p.make(replicate_emulator, prefer_wait_s=30) as client:
        handle = await client.submit(JobRequest(prompt=PROMPT, seed=7))
        assert replicate_emulator.waits == [30]
        status = await client.poll(handle)
    assert status.state is JobState.SUCCEEDED and decoded_frames(download(status.result_url)) == 8


def test_fal_sdk_reads_a_cancelled_request(monkeypatch: pytest.MonkeyPatch):
    with fal_emu.FalEmulator(api_key=FAL_KEY) as e:
        e.polls_to_finish = 100
        monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{e.url}/")  # scheme and host only, as above
        handle = fal_client.SyncClient(key=FAL_KEY).submit(fal_emu.APP, arguments={"prompt": PROMPT})
        handle.cancel()
        status = handle.status()
    assert isinstance(status, fal_client.Completed) and status.error_type == "client_cancelled", status


def test_runway_sdk_validates_cancelled_and_throttled_tasks():
    with runway_emu.RunwayEmulator(api_key=RUNWAY_KEY) as e:
        e.max_inflight = 1
        client = runwayml.RunwayML(api_key=RUNWAY_KEY, base_url=e.url, max_retries=0, _strict_response_validation=True)
        first = client.text_to_video.create(model="gen4.5", prompt_text=PROMPT, ratio="1280:720", duration=5)
        second = client.text_to_video.create(model="gen4.5", prompt_text="second", ratio="1280:720", duration=5)
        assert client.tasks.retrieve(second.id).status == "THROTTLED"
        client.tasks.delete(first.id)
        cancelled = client.tasks.retrieve(first.id)
    assert cancelled.status == "CANCELLED" and cancelled.cost.credits == 0


# -- the status sets: SDK types = emulator = adapter -------------------------------------------------
def _literals(annotation: Any) -> set[str]:
    """The string values of a `Literal[...]`, also inside Optional/Union."""
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    return set().union(*(_literals(a) for a in typing.get_args(annotation)))


def test_sdk_status_sets_match_the_adapters():
    luma = _literals(Generation.model_fields["state"].annotation)
    assert luma == set(luma_adapter.STATES) == set(luma_emu.STATES.values())

    # replicate-python 1.0.7 types five statuses; the lifecycle docs add `aborted` (Cancel-After).
    rep = _literals(replicate.prediction.Prediction.__fields__["status"].outer_type_)  # a pydantic v1 model
    assert rep | {"aborted"} == set(replicate_adapter.STATES) == set(replicate_emu.STATUSES.values()) | {"aborted"}

    # fal-client parses exactly these three (`_BaseRequestHandle._parse_status`), anything else raises.
    fal = {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
    for status in fal:
        body = {"status": status, "queue_position": 0, "logs": None}
        assert fal_client.client._BaseRequestHandle("r", "u", "u", "u")._parse_status(body) is not None
    with pytest.raises(ValueError, match="Unknown status"):
        fal_client.client._BaseRequestHandle("r", "u", "u", "u")._parse_status({"status": "FAILED"})
    assert fal == set(fal_adapter.STATES) == set(fal_emu.STATUSES.values())

    task = TaskRetrieveResponse
    members = typing.get_args(typing.get_args(task)[0])  # Annotated[Union[...], discriminator]
    runway = set().union(*(_literals(m.model_fields["status"].annotation) for m in members))
    assert runway == set(runway_adapter.STATES) == set(runway_emu.STATUSES.values()) | {"THROTTLED"}
