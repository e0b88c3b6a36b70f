"""`afd teacher-server` and `afd teacher-actor` as real processes: clips appear, the key never shows."""

from __future__ import annotations

import signal

import httpx
from test_teacher_actor import KEY, cli_overrides, have_clips, make_cfg, prompts, push, spawn, wait_for, wait_serving

from afd_async.store.redis_server import free_port


def stop_in_order(*procs) -> None:
    """SIGTERM each role in turn (the actor before the server it calls); each must exit 0."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0


def kill_leftovers(*procs) -> None:
    for p in procs:
        if p is not None and p.poll() is None:
            p.kill()


def test_roles_produce_clips_and_never_log_the_key(redis_server, redis_client, tmp_path):
    port = free_port()
    server_log, actor_log = tmp_path / "server.log", tmp_path / "actor.log"
    server = spawn("teacher-server", [f"cluster.teacher_server_port={port}", "cluster.metrics_port=0",
                                      "teacher.server.render_latency_s=0.1"], server_log, AFD_LOG_LEVEL="DEBUG")
    actor = None
    try:
        wait_serving(server, port, server_log)
        r = httpx.get(f"http://127.0.0.1:{port}/v1/admin/stats", timeout=5)
        assert r.status_code == 401  # auth is always on
        cfg = make_cfg(redis_server.url, port)
        texts = prompts(3)
        push(redis_client, texts)
        actor = spawn("teacher-actor", cli_overrides(redis_server.url, port), actor_log, AFD_LOG_LEVEL="DEBUG")
        wait_for(lambda: have_clips(redis_client, cfg, texts) == 3, 90, "3 clips from the actor process")
        stop_in_order(actor, server)
    finally:
        kill_leftovers(server, actor)
    logs = server_log.read_text() + actor_log.read_text()
    assert "teacher-server listening" in logs and "teacher-actor done" in logs
    assert KEY not in logs and KEY[8:] not in logs


def test_server_refuses_to_start_without_a_key(tmp_path):
    log = tmp_path / "server.log"
    p = spawn("teacher-server", ["cluster.teacher_server_port=0", "cluster.metrics_port=0"], log,
              AFD_TEACHER_API_KEY="")
    assert p.wait(60) == 2
    assert "AFD_TEACHER_API_KEY" in log.read_text()


def test_roles_with_callbacks_end_jobs_on_the_webhook_and_never_log_the_secret(redis_server, redis_client, tmp_path):
    """`teacher.callback.enabled=true` across real processes: the server signs, the actor's receiver verifies
    and every job ends on its callback (fallback poll 120 s, so a job seen by polling would not finish in time)."""
    import base64
    import uuid

    secret = "whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode()
    port = free_port()
    server_log, actor_log = tmp_path / "server.log", tmp_path / "actor.log"
    server = spawn("teacher-server", [f"cluster.teacher_server_port={port}", "cluster.metrics_port=0",
                                      "teacher.server.render_latency_s=0.1"], server_log, AFD_LOG_LEVEL="DEBUG",
                   AFD_TEACHER_WEBHOOK_SECRET=secret)
    actor = None
    try:
        wait_serving(server, port, server_log)
        cfg = make_cfg(redis_server.url, port)
        texts = prompts(3)
        push(redis_client, texts)
        actor = spawn("teacher-actor", cli_overrides(redis_server.url, port, "teacher.callback.enabled=true",
                                                     "teacher.callback.fallback_poll_s=120"),
                      actor_log, AFD_LOG_LEVEL="DEBUG", AFD_TEACHER_WEBHOOK_SECRET=secret)
        wait_for(lambda: have_clips(redis_client, cfg, texts) == 3, 60, "3 clips ended by callbacks")
        stop_in_order(actor, server)
    finally:
        kill_leftovers(server, actor)
    logs = server_log.read_text() + actor_log.read_text()
    assert "callbacks on :" in logs and "teacher-actor done" in logs
    assert secret not in logs and secret[6:] not in logs and "teacher-callback/" not in logs  # secret, path token
