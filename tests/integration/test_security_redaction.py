"""Secrets never show in what a person or a log sees: client reprs, connection and auth errors, config
errors, the launcher's security object, a role that fails to start. Real redis-server and real processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from afd_async.config import load_config
from afd_async.config.cluster import ClusterConfig
from afd_async.store.connect import redis_client, redis_connection_kwargs
from afd_async.security.local import local_security
from afd_async.config.credentials import CredentialError
from afd_async.store.redis_server import RedisServer, free_port

PASSWORD = "s3cret-redis-password-never-printed"


def test_client_reprs_and_errors_do_not_show_the_password(tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AFD_REDIS_PASSWORD", PASSWORD)
    with RedisServer(data_dir=str(tmp_path / "r"), password=PASSWORD) as server:
        r = redis_client(ClusterConfig(mode="external", redis_url=server.url))
        assert r.ping()
        shown = [repr(r), str(r), repr(r.connection_pool), repr(server), server.url]
        monkeypatch.setenv("AFD_REDIS_PASSWORD", "a-wrong-" + PASSWORD)
        wrong = redis_client(ClusterConfig(mode="external", redis_url=server.url))
        wrong.connection_pool.connection_kwargs["retry"] = Retry(NoBackoff(), 0)
        with pytest.raises(redis.AuthenticationError) as auth:
            wrong.ping()
        shown.append(str(auth.value))
    closed = redis_client(ClusterConfig(mode="external", redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    closed.connection_pool.connection_kwargs["retry"] = Retry(NoBackoff(), 0)
    with pytest.raises(redis.ConnectionError) as conn:
        closed.ping()
    shown += [str(conn.value), caplog.text]
    assert all(PASSWORD not in text for text in shown), [t for t in shown if PASSWORD in t]


def test_credential_mistakes_name_variables_and_paths_never_values(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AFD_REDIS_PASSWORD", PASSWORD)
    monkeypatch.setenv("AFD_REDIS_PASSWORD_FILE", str(tmp_path / "pw"))
    with pytest.raises(CredentialError) as both:
        redis_connection_kwargs(ClusterConfig(mode="external", redis_url="redis://127.0.0.1:1/0"))
    assert "AFD_REDIS_PASSWORD_FILE" in str(both.value) and PASSWORD not in str(both.value)
    with pytest.raises(ValueError) as inline:  # credentials in the URL are refused, and not echoed
        ClusterConfig(mode="external", redis_url=f"redis://afd:{PASSWORD}@127.0.0.1:1/0")
    assert PASSWORD not in str(inline.value)


def test_launcher_security_object_and_acl_file_hold_no_plain_password(tmp_path) -> None:
    cfg = load_config(["cluster.redis_acl=true"])
    sec = local_security(cfg, tmp_path / "redis")
    env = sec.role_env("feeder")
    assert env["AFD_REDIS_USER"] == "afd-feeder" and len(env["AFD_REDIS_PASSWORD"]) >= 32
    assert env["AFD_REDIS_PASSWORD"] not in repr(sec) + str(sec)
    assert env["AFD_REDIS_PASSWORD"] not in (tmp_path / "redis" / "users.acl").read_text()
    assert sec.role_env("teacher-server") == {}  # no Redis login for a role that needs none
    assert local_security(load_config([]), tmp_path / "off").server_kwargs() == {}


def test_a_role_refused_by_redis_logs_no_password(tmp_path) -> None:
    with RedisServer(data_dir=str(tmp_path / "r"), password=PASSWORD) as server:
        env = {**os.environ, "AFD_REDIS_PASSWORD": "wrong-" + PASSWORD, "HF_HUB_OFFLINE": "1"}
        env.pop("AFD_REDIS_PASSWORD_FILE", None)
        proc = subprocess.run([sys.executable, "-m", "afd_async.cli", "feeder", "experiment=smoke",
                               "cluster.mode=external", f"cluster.redis_url={server.url}", "cluster.metrics_port=0"],
                              capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "AuthenticationError" in out or "invalid username-password" in out, out[-2000:]
    assert PASSWORD not in out
