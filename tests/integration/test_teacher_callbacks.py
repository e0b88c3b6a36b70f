"""Completion callbacks end to end: the local server's signed webhooks → the actor's receiver → the gateway.

Real redis-server, the real local teacher server and the real receiver on 127.0.0.1; no mocks. The
server is started with a webhook secret, so a create carrying `webhook` gets a signed event at the end.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
import uuid
from typing import Any, Optional

import httpx
import pytest

from afd_async.config.credentials import Secret
from afd_async.teacher.actor import build_gateway, connect_redis, make_teacher_client
from afd_async.teacher.callbacks import CallbackReceiver
from afd_async.teacher.contract import JobRequest
from afd_async.teacher.gateway import TeacherGateway
from afd_async.teacher.webhooks import StandardWebhookVerifier, sign_standard_webhook
from afd_async.testing.waiting import wait_until
from test_teacher_actor import KEY, make_cfg

SECRET = "whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode()
REQ = JobRequest(prompt="a red ball falls and bounces twice", seed=0, model="physics-v1")


@pytest.fixture()
def server(monkeypatch):
    """The local teacher server (as the role builds it) signing webhooks with SECRET."""
    from afd_async.config import load_config
    from afd_async.teacher.server_role import start_teacher_server

    monkeypatch.setenv("AFD_TEACHER_API_KEY", KEY)
    monkeypatch.setenv("AFD_TEACHER_WEBHOOK_SECRET", SECRET)
    handle, stop = start_teacher_server(load_config(["teacher.server.render_latency_s=0.05"]), port=0)
    yield handle
    stop.set()
    handle.stop()


def free_port() -> int:
    """A port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def gateway_with(redis_url: str, port: int, receiver: CallbackReceiver, *, fallback_poll_s: float,
                       callback_url: Optional[str] = None) -> TeacherGateway:
    """A gateway whose client sends `callback_url` (default: the receiver's) and waits on `receiver`."""
    cfg = make_cfg(redis_url, port, f"teacher.callback.fallback_poll_s={fallback_poll_s}", "teacher.callback.enabled=true")
    client = make_teacher_client(cfg, {"api_key": KEY}, callback_url=callback_url or receiver.url)
    await receiver.start(client)  # type: ignore[arg-type]
    return build_gateway(cfg, connect_redis(redis_url), client, callbacks=receiver)


async def close(gw: TeacherGateway, receiver: CallbackReceiver) -> None:
    await receiver.stop()
    await gw.client.aclose()
    await gw.quota.redis.aclose()


def signed_post(url: str, body: dict[str, Any], *, msg_id: Optional[str] = None, secret: str = SECRET,
                ts: Optional[int] = None) -> httpx.Response:
    raw = json.dumps(body).encode()
    msg_id = msg_id or f"evt_{uuid.uuid4().hex}"
    ts = int(time.time()) if ts is None else ts
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
               "webhook-signature": sign_standard_webhook(secret, msg_id, ts, raw)}
    return httpx.post(url, content=raw, headers=headers, timeout=10)


def test_callback_completes_the_job_without_any_poll(redis_server, redis_client, server):
    async def main() -> None:
        receiver = CallbackReceiver(verifier=StandardWebhookVerifier(Secret(SECRET)))
        gw = await gateway_with(redis_server.url, server.port, receiver, fallback_poll_s=120)  # a poll would hang it
        t0 = time.monotonic()
        entry = await asyncio.wait_for(gw.run_job(REQ), 60)
        assert time.monotonic() - t0 < 60
        assert gw.counters.get("polls", 0) == 0 and gw.counters["callbacks_completed"] == 1
        assert entry.meta.job_id and entry.clip.num_frames > 0
        assert (await gw.quota.snapshot())["in_flight"] == 0  # the lease went back at the callback
        assert receiver.counters["delivered"] == 1 and receiver.counters["rejected"] == 0
        await close(gw, receiver)

    asyncio.run(main())


def test_lost_callback_falls_back_to_polling(redis_server, redis_client, server):
    async def main() -> None:
        receiver = CallbackReceiver(verifier=StandardWebhookVerifier(Secret(SECRET)))
        dead = f"http://127.0.0.1:{free_port()}/teacher-callback/nobody-listens"  # the callback never arrives
        gw = await gateway_with(redis_server.url, server.port, receiver, fallback_poll_s=0.3, callback_url=dead)
        entry = await asyncio.wait_for(gw.run_job(REQ), 60)
        assert entry.meta.job_id
        assert gw.counters["callbacks_missed"] >= 1 and gw.counters["polls"] >= 1
        assert gw.counters.get("callbacks_completed", 0) == 0 and receiver.counters["received"] == 0
        await close(gw, receiver)

    asyncio.run(main())
    sender = server._server.config.app.state.webhooks  # the server's WebhookSender: it retried, then gave up
    wait_until(lambda: sender.counters["dropped"] == 1 and sender.counters["retried"] >= 1, 30,
               what="the server gave the lost webhook up")


def test_duplicate_and_replayed_callbacks_are_idempotent(redis_server, redis_client, server):
    async def main() -> None:
        receiver = CallbackReceiver(verifier=StandardWebhookVerifier(Secret(SECRET)))
        gw = await gateway_with(redis_server.url, server.port, receiver, fallback_poll_s=120)
        entry = await asyncio.wait_for(gw.run_job(REQ), 60)
        event = {"type": "video.completed", "data": {"id": entry.meta.job_id, "status": "completed"}}
        again = await asyncio.to_thread(signed_post, receiver.url, event)  # a second, distinct delivery
        assert again.status_code == 200 and again.json() == {"duplicate": True}
        same = await asyncio.to_thread(signed_post, receiver.url, event, msg_id="evt_fixed")
        replay = await asyncio.to_thread(signed_post, receiver.url, event, msg_id="evt_fixed")  # a replay of one id
        assert same.status_code == 200 and replay.status_code == 200 and replay.json()["duplicate"] is True
        assert "already delivered" in replay.json()["reason"]
        assert receiver.counters["delivered"] == 1 and receiver.counters["duplicates"] == 2
        assert receiver.counters["replayed"] == 1
        assert gw.counters["callbacks_completed"] == 1 and gw.counters.get("done") == 1
        await close(gw, receiver)

    asyncio.run(main())


def test_unknown_jobs_forged_stale_and_bad_tokens_are_refused(redis_server, redis_client, server):
    async def main() -> None:
        receiver = CallbackReceiver(verifier=StandardWebhookVerifier(Secret(SECRET)))
        gw = await gateway_with(redis_server.url, server.port, receiver, fallback_poll_s=120)
        event = {"type": "video.completed", "data": {"id": "video_not_ours", "status": "completed"}}
        unknown = await asyncio.to_thread(signed_post, receiver.url, event)
        assert unknown.status_code == 404 and "unknown job" in unknown.json()["error"]
        other = "whsec_" + base64.b64encode(b"x" * 32).decode()
        forged = await asyncio.to_thread(signed_post, receiver.url, event, secret=other)
        assert forged.status_code == 401 and "no webhook signature matches" in forged.json()["error"]
        stale = await asyncio.to_thread(signed_post, receiver.url, event, ts=int(time.time()) - 3600)
        assert stale.status_code == 401 and "tolerance" in stale.json()["error"]
        wrong_path = receiver.url.rsplit("/", 1)[0] + "/guessed-token"
        token = await asyncio.to_thread(signed_post, wrong_path, event)
        assert token.status_code == 404
        assert receiver.counters == {**receiver.counters, "unknown_job": 1, "rejected": 2, "bad_token": 1,
                                     "delivered": 0}
        for resp in (unknown, forged, stale, token):
            assert SECRET[6:] not in resp.text and receiver.url not in resp.text
        await close(gw, receiver)

    asyncio.run(main())


def test_unsigned_callback_only_wakes_a_poll(redis_server, redis_client, server):
    """Luma/Kling-style (no signature scheme): the body is not trusted; the callback wakes one poll."""

    async def main() -> None:
        receiver = CallbackReceiver(verifier=None)
        gw = await gateway_with(redis_server.url, server.port, receiver, fallback_poll_s=120)
        entry = await asyncio.wait_for(gw.run_job(REQ), 60)
        assert entry.meta.job_id
        assert gw.counters["callbacks_woke"] == 1 and gw.counters["polls"] == 1
        assert gw.counters.get("callbacks_completed", 0) == 0 and gw.counters.get("callbacks_missed", 0) == 0
        await close(gw, receiver)

    asyncio.run(main())


def test_actor_from_config_ends_every_job_on_its_callback(redis_server, redis_client, server):
    """`teacher.callback.enabled=true` as `afd teacher-actor` wires it: every clip cached, not one poll."""
    from afd_async.teacher.actor import TeacherActor, make_callback_receiver
    from test_teacher_actor import have_clips, prompts, push

    cfg = make_cfg(redis_server.url, server.port, "teacher.callback.enabled=true", "teacher.callback.fallback_poll_s=120")
    texts = prompts(4)
    push(redis_client, texts)

    async def main() -> TeacherActor:
        receiver = make_callback_receiver(cfg, Secret(SECRET))
        assert receiver is not None
        client = make_teacher_client(cfg, {"api_key": KEY}, callback_url=receiver.url)
        await receiver.start(client)  # type: ignore[arg-type]
        r = connect_redis(cfg.cluster.redis_url)
        actor = TeacherActor(cfg, build_gateway(cfg, r, client, callbacks=receiver), r)
        task = asyncio.create_task(actor.run())
        await asyncio.to_thread(wait_until, lambda: have_clips(redis_client, cfg, texts) == len(texts), 60,
                                what="every clip cached")
        actor.stop()
        await asyncio.wait_for(task, 30)
        await close(actor.gateway, receiver)
        return actor

    actor = asyncio.run(main())
    assert actor.report.done == 4 and actor.gateway.counters["callbacks_completed"] == 4
    assert actor.gateway.counters.get("polls", 0) == 0


def test_receiver_per_provider_signature_scheme(tmp_path, monkeypatch):
    """Which verifier each provider gets (docs/SECURITY.md's table), and what is refused up front."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from afd_async.config import load_config
    from afd_async.config.credentials import CredentialError
    from afd_async.teacher.actor import make_callback_receiver
    from afd_async.teacher.webhooks import FalVerifier

    def receiver(*overrides: str, secret: Optional[Secret] = Secret(SECRET)) -> Optional[CallbackReceiver]:
        return make_callback_receiver(load_config(["teacher.callback.enabled=true", *overrides]), secret)

    assert make_callback_receiver(load_config([]), Secret(SECRET)) is None  # off by default
    with pytest.raises(CredentialError, match="AFD_TEACHER_WEBHOOK_SECRET"):
        receiver(secret=None)  # local/openai callbacks are signed: no secret, no receiver
    local = receiver()
    assert isinstance(local.verifier, StandardWebhookVerifier) and "teacher-callback/" in local.url
    assert "teacher-callback" not in repr(local)  # the path token never prints
    remote = ("teacher.kind=remote", "teacher.model=m")
    assert receiver(*remote, "teacher.provider=runway") is None  # no callbacks: polling only
    luma = receiver(*remote, "teacher.provider=luma")
    assert luma is not None and luma.verifier is None  # unsigned: the callback only wakes a poll
    fal_unsigned = receiver(*remote, "teacher.provider=fal")
    assert fal_unsigned is not None and fal_unsigned.verifier is None  # no JWKS file given: unsigned
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.Raw,
                                                                 serialization.PublicFormat.Raw)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519",
                                          "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}]}))
    fal = receiver(*remote, "teacher.provider=fal", f"teacher.callback.fal_jwks_path={jwks}")
    assert isinstance(fal.verifier, FalVerifier)
    for r in (local, luma, fal_unsigned, fal):
        asyncio.run(r.stop())
