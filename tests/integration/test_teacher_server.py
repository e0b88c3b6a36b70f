"""Local teacher server over real HTTP on loopback: auth, lifecycle, the OpenAI Videos wire format, limits, faults.

The official SDK's own run against this server is tests/integration/test_sdk_openai.py.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from afd_async.teacher.server import FaultConfig, ServerHandle, create_app, physics_backend, serve
from afd_async.video.clip import Clip
from afd_async.video.codec import VideoDecodeError, decode_mp4

KEY, OTHER_KEY = "sk-test-key-0123456789", "sk-other-key-9876543210"
CAPS = dict(max_frames=500, max_pixels=1 << 20, max_bytes=1 << 24)


def square_backend(prompt: str, seed: int, params: dict) -> Clip:
    """A white square moving right; honours size/fps/seconds, default 32x32, 8 fps, 1 s."""
    h, w = params.get("height") or 32, params.get("width") or 32
    fps, seconds = params.get("fps") or 8.0, params.get("seconds") or 1.0
    t = max(1, round(fps * seconds))
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        x = (seed + 2 * i) % (w - 4)
        frames[i, h // 2 - 2 : h // 2 + 2, x : x + 4] = 255
    return Clip(frames=frames, fps=fps)


@contextlib.contextmanager
def running(**overrides: Any) -> Iterator[tuple[ServerHandle, httpx.Client]]:
    kw: dict[str, Any] = dict(backend=square_backend, api_keys=[KEY, OTHER_KEY], create_rate_per_min=6000,
                              max_in_flight=8, max_queued=8, render_latency_s=0.0, faults=FaultConfig(),
                              result_ttl_s=60.0, default_size="32x32", default_seconds=1.0)
    kw.update(overrides)
    with serve(create_app(**kw)) as handle, httpx.Client(
        base_url=handle.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10.0
    ) as client:
        yield handle, client


def create(client: httpx.Client, prompt: str = "a square moves", **body: Any) -> httpx.Response:
    return client.post("/v1/videos", json={"prompt": prompt, "model": "square", "seed": 1, **body})


def wait_status(client: httpx.Client, video_id: str, until: tuple[str, ...], timeout_s: float = 20.0) -> dict:
    """Poll until the job reaches one of `until` (the deadline fails the test, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get(f"/v1/videos/{video_id}").json()
        if body["status"] in until:
            return body
        assert time.monotonic() < deadline, f"job stuck in {body['status']}"
        time.sleep(0.02)


def test_auth_required_and_key_never_echoed() -> None:
    with running() as (handle, client):
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": f"Basic {KEY}"}):
            r = httpx.post(f"{handle.url}/v1/videos", json={"prompt": "x"}, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert "sk-" not in r.text
        assert httpx.get(f"{handle.url}/v1/admin/stats").status_code == 401
        assert client.get("/v1/admin/stats").json()["auth_failures"] == 4


def test_full_lifecycle_to_decoded_mp4() -> None:
    with running() as (_, client):
        r = create(client, size="48x32", seconds="1.5", fps=8)
        assert r.status_code == 200
        video = r.json()
        assert video["object"] == "video" and video["status"] == "queued" and video["error"] is None
        assert (video["model"], video["seconds"], video["size"], video["progress"]) == ("square", "1.5", "48x32", 0)
        assert video["remixed_from_video_id"] is None and video["completed_at"] is None
        done = wait_status(client, video["id"], ("completed", "failed"))
        assert done["status"] == "completed" and done["progress"] == 100
        assert done["expires_at"] >= done["completed_at"] >= done["created_at"] and done["size"] == "48x32"
        content = client.get(f"/v1/videos/{video['id']}/content")
        assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
        clip = decode_mp4(content.content, **CAPS)
        assert clip.frames.shape == (12, 32, 48, 3) and clip.fps == pytest.approx(8.0)
        listed = client.get("/v1/videos", params={"limit": 5}).json()
        assert [v["id"] for v in listed["data"]] == [video["id"]]
        stats = client.get("/v1/admin/stats").json()
        assert stats["creates_accepted"] == 1 and stats["jobs"]["completed"] == 1 and stats["jobs"]["downloads"] == 1


def _tiny(prompt: str, seed: int, params: dict) -> Clip:
    return Clip(frames=np.zeros((2, 8, 8, 3), np.uint8), fps=8.0)


def test_left_out_fields_get_the_defaults() -> None:
    """API reference, create video: model `sora-2`, seconds "4", size `720x1280`; a server may set its own."""
    with running(backend=_tiny, default_size="720x1280", default_seconds=4.0) as (_, client):
        video = client.post("/v1/videos", json={"prompt": "p"}).json()
        assert (video["model"], video["seconds"], video["size"]) == ("sora-2", "4", "720x1280")
    with running(backend=_tiny, default_model="physics-v1") as (_, client):
        video = client.post("/v1/videos", json={"prompt": "p"}).json()
        assert (video["model"], video["seconds"], video["size"]) == ("physics-v1", "1", "32x32")


def test_form_bodies_as_the_sdk_sends_them() -> None:
    """The SDK posts creates as forms (every field a string); a file upload is refused with its field named."""
    with running() as (_, client):
        r = client.post("/v1/videos", data={"prompt": "a square", "seconds": "2", "size": "16x16", "seed": "5"})
        assert r.status_code == 200, r.text
        assert (r.json()["seconds"], r.json()["size"], r.json()["seed"]) == ("2", "16x16", 5)
        r = client.post("/v1/videos", data={"prompt": "a square"}, files={"input_reference": ("a.png", b"x")})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input_reference"


def test_jobs_are_private_to_their_key_and_idempotent() -> None:
    with running() as (handle, client):
        first = client.post("/v1/videos", json={"prompt": "p"}, headers={"Idempotency-Key": "abc"}).json()
        again = client.post("/v1/videos", json={"prompt": "p"}, headers={"Idempotency-Key": "abc"}).json()
        assert first["id"] == again["id"]
        other = httpx.get(f"{handle.url}/v1/videos/{first['id']}", headers={"Authorization": f"Bearer {OTHER_KEY}"})
        assert other.status_code == 404
        assert client.get("/v1/admin/stats").json()["idempotent_replays"] == 1


def test_bad_requests_are_400() -> None:
    with running() as (_, client):
        assert create(client, size="big").status_code == 400
        assert create(client, seconds=-1).json()["error"]["param"] == "seconds"
        assert client.post("/v1/videos", content=b"not json").status_code == 400
        r = create(client, "[fault:no_such_fault] x")
        assert r.status_code == 400 and "unknown fault marker" in r.json()["error"]["message"]


def test_create_rate_limit_429_with_retry_after() -> None:
    with running(create_rate_per_min=60, create_burst=2) as (_, client):
        assert [create(client).status_code for _ in range(2)] == [200, 200]
        r = create(client)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit"
        assert int(r.headers["Retry-After"]) >= 1
        assert r.headers["x-ratelimit-limit-requests"] == "60"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
        assert client.get("/v1/admin/stats").json()["throttled"]["rate_limit"] == 1


def test_concurrency_cap_then_delete_frees_a_slot() -> None:
    """Deleting a live job stops it (undocumented by the API: this server cancels, then deletes)."""
    with running(max_in_flight=2, render_latency_s=60.0) as (_, client):
        ids = [create(client).json()["id"] for _ in range(2)]
        r = create(client)
        assert r.status_code == 429 and r.json()["error"]["code"] == "concurrency_limit"
        deleted = client.delete(f"/v1/videos/{ids[0]}")
        assert deleted.status_code == 200
        assert deleted.json() == {"id": ids[0], "object": "video.deleted", "deleted": True}
        assert client.get(f"/v1/videos/{ids[0]}").status_code == 404
        assert client.delete(f"/v1/videos/{ids[0]}").status_code == 404
        assert client.post(f"/v1/videos/{ids[1]}/cancel").status_code in (404, 405)  # the API has no cancel route
        assert create(client).status_code == 200
        assert client.delete(f"/v1/videos/{ids[1]}").json()["deleted"] is True
        stats = client.get("/v1/admin/stats").json()
        assert stats["throttled"]["concurrency_limit"] == 1 and stats["jobs"]["cancelled"] == 2
        ledger = {j["id"]: j for j in client.get("/v1/admin/jobs").json()["data"]}
        assert ledger[ids[0]]["deleted"] and ledger[ids[0]]["status"] == "cancelled"  # the admin ledger keeps it


def test_delete_a_finished_video_removes_it_everywhere() -> None:
    with running() as (_, client):
        video_id = create(client).json()["id"]
        wait_status(client, video_id, ("completed",))
        assert client.delete(f"/v1/videos/{video_id}").json()["deleted"] is True
        assert client.get(f"/v1/videos/{video_id}/content").status_code == 404
        assert client.get("/v1/videos").json()["data"] == []
        again = client.post("/v1/videos", json={"prompt": "p"}, headers={"Idempotency-Key": "k1"}).json()["id"]
        client.delete(f"/v1/videos/{again}")
        fresh = client.post("/v1/videos", json={"prompt": "p"}, headers={"Idempotency-Key": "k1"}).json()["id"]
        assert fresh != again  # a deleted job's key makes a new job, never a 404'd replay


def test_list_pages_with_after_as_the_sdk_walks_them() -> None:
    """`pagination.py` ConversationCursorPage: next page `after=last_id` while `has_more`."""
    with running() as (_, client):
        ids = [create(client, f"square {i}").json()["id"] for i in range(3)]
        for order, expect in (("desc", ids[::-1]), ("asc", ids)):
            seen, after = [], None
            while True:
                query = {"limit": 1, "order": order, **({"after": after} if after else {})}
                page = client.get("/v1/videos", params=query).json()
                assert page["object"] == "list" and page["first_id"] == page["data"][0]["id"] == page["last_id"]
                seen.append(page["last_id"])
                after = page["last_id"]
                if not page["has_more"]:
                    break
            assert seen == expect
        whole = client.get("/v1/videos").json()
        assert [v["id"] for v in whole["data"]] == ids[::-1] and whole["has_more"] is False
        for bad in ({"after": "video_nope"}, {"limit": 0}, {"order": "up"}):
            r = client.get("/v1/videos", params=bad)
            assert r.status_code == 400 and r.json()["error"]["param"] == next(iter(bad))


def test_thumbnail_and_spritesheet_variants_are_images() -> None:
    with running() as (_, client):
        video_id = create(client, size="48x32", seconds=1, fps=8).json()["id"]
        wait_status(client, video_id, ("completed",))
        thumb = client.get(f"/v1/videos/{video_id}/content", params={"variant": "thumbnail"})
        assert thumb.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(thumb.content)).size == (48, 32)
        sheet = client.get(f"/v1/videos/{video_id}/content", params={"variant": "spritesheet"})
        assert sheet.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(sheet.content)).format == "JPEG"
        bad = client.get(f"/v1/videos/{video_id}/content", params={"variant": "gif"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "variant"
        stats = client.get("/v1/admin/stats").json()
        assert stats["jobs"]["downloads"] == 0  # previews are not the video


def test_queue_cap_503_overloaded() -> None:
    with running(render_workers=1, max_queued=1, render_latency_s=60.0) as (_, client):
        first = create(client).json()["id"]
        wait_status(client, first, ("in_progress",))
        assert create(client).status_code == 200  # waits in the queue
        r = create(client)
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded" and "Retry-After" in r.headers
        assert client.get("/v1/admin/stats").json()["throttled"]["queue_full"] == 1


def test_result_expires_410() -> None:
    """Past `expires_at` the files are gone (410) and the video still reads `completed`, as in the API."""
    with running(result_ttl_s=0.3) as (_, client):
        video_id = create(client).json()["id"]
        wait_status(client, video_id, ("completed",))
        deadline = time.monotonic() + 20.0
        while (r := client.get(f"/v1/videos/{video_id}/content")).status_code == 200:
            assert time.monotonic() < deadline, "the result never expired"
            time.sleep(0.05)
        assert r.status_code == 410 and r.json()["error"]["code"] == "expired"
        video = client.get(f"/v1/videos/{video_id}").json()
        assert video["status"] == "completed" and video["expires_at"] <= time.time() + 1
        assert client.get("/v1/admin/stats").json()["jobs"]["expired"] == 1


# ---- faults -------------------------------------------------------------------------------------


def test_fault_markers_on_create() -> None:
    with running(faults=FaultConfig(hang_s=5.0)) as (handle, client):
        r = create(client, "a square [fault:rate_limit:1]")
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit" and "Retry-After" in r.headers
        assert create(client, "a square [fault:rate_limit:1]").status_code == 200  # fired once only
        r = create(client, "x [fault:server_error]")
        assert r.status_code == 500 and r.json()["error"]["code"] == "server_error"
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{handle.url}/v1/videos", json={"prompt": "x [fault:hang]"},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=0.3)
        injected = client.get("/v1/admin/stats").json()["faults_injected"]
        assert injected["rate_limit"] == 1 and injected["server_error"] == 1 and injected["hang"] == 1


def _finished(client: httpx.Client, prompt: str) -> tuple[dict, httpx.Response]:
    video = create(client, prompt, size="32x32", fps=8, seconds=1)
    assert video.status_code == 200
    done = wait_status(client, video.json()["id"], ("completed", "failed"))
    return done, client.get(f"/v1/videos/{done['id']}/content")


def test_job_fault_content_policy() -> None:
    with running() as (_, client):
        done, content = _finished(client, "[fault:content_policy] a square")
        assert done["status"] == "failed" and done["error"]["code"] == "content_policy"
        assert content.status_code == 409


@pytest.mark.parametrize("fault", ["truncated_mp4", "corrupt_mp4"])
def test_job_fault_broken_mp4(fault: str) -> None:
    with running() as (_, client):
        done, content = _finished(client, f"a square [fault:{fault}]")
        assert done["status"] == "completed" and content.status_code == 200
        with pytest.raises(VideoDecodeError):
            decode_mp4(content.content, **CAPS)


def test_job_fault_expired_url() -> None:
    with running() as (_, client):
        done, content = _finished(client, "a square [fault:expired_url]")
        assert done["status"] == "completed"
        assert content.status_code == 410 and content.json()["error"]["code"] == "expired"


@pytest.mark.parametrize("fault, shape, fps", [
    ("wrong_size", (8, 16, 16, 3), 8.0), ("wrong_fps", (8, 32, 32, 3), 16.0), ("wrong_length", (4, 32, 32, 3), 8.0),
])
def test_job_fault_wrong_format(fault: str, shape: tuple[int, ...], fps: float) -> None:
    with running() as (_, client):
        done, content = _finished(client, f"a square [fault:{fault}]")
        clip = decode_mp4(content.content, **CAPS)
        assert done["prompt"].endswith(f"[fault:{fault}]")  # shown as submitted
        assert clip.frames.shape == shape and clip.fps == pytest.approx(fps)


def test_probabilistic_faults_are_deterministic_per_seed() -> None:
    def run(seed: int) -> list[int]:
        with running(faults=FaultConfig(seed=seed, server_error=0.5)) as (_, client):
            return [client.get("/v1/videos/video_none").status_code for _ in range(24)]

    first = run(7)
    assert first == run(7) and set(first) == {404, 500}


def test_probabilistic_job_faults_counted() -> None:
    with running(faults=FaultConfig(seed=1, content_policy=1.0)) as (_, client):
        done, _ = _finished(client, "a square")
        assert done["error"]["code"] == "content_policy"
        assert client.get("/v1/admin/stats").json()["faults_injected"]["content_policy"] == 1


# ---- backends -----------------------------------------------------------------------------------


def test_physics_backend_end_to_end() -> None:
    with running(backend=physics_backend(height=32, width=32, fps=8.0, seconds=1.0)) as (_, client):
        done, content = _finished(client, "a red ball falls from the top and bounces twice")
        assert done["status"] == "completed"
        clip = decode_mp4(content.content, **CAPS)
        assert clip.frames.shape == (8, 32, 32, 3) and clip.frames.std() > 1.0
        bad, _ = _finished(client, "a purple elephant sings opera")
        assert bad["status"] == "failed" and bad["error"]["code"] == "invalid_request"


def test_backend_crash_fails_job_not_server() -> None:
    def broken(prompt: str, seed: int, params: dict) -> Clip:
        raise RuntimeError("GPU fell off")

    with running(backend=broken) as (_, client):
        done, _ = _finished(client, "x")
        assert done["status"] == "failed" and done["error"]["code"] == "generation_failed"
        assert client.get("/healthz").status_code == 200


def test_serve_reports_a_port_in_use() -> None:
    app_kw: dict[str, Any] = dict(backend=square_backend, api_keys=[KEY], create_rate_per_min=60, max_in_flight=1,
                                  max_queued=1, render_latency_s=0.0, faults=FaultConfig(), result_ttl_s=60.0)
    with serve(create_app(**app_kw)) as first:
        with pytest.raises(RuntimeError, match="failed to start"):
            serve(create_app(**app_kw), port=first.port)
        assert httpx.get(f"{first.url}/healthz").status_code == 200
