"""Connections every role opens: Redis from the cluster config, secrets from env/files."""

from __future__ import annotations

import signal
import threading
from typing import Optional
from urllib.parse import urlparse

import redis

from afd_async.config.cluster import ClusterConfig


def redis_client(cluster: ClusterConfig, *, socket_timeout_s: float = 10.0) -> redis.Redis:
    """A client for `cluster.redis_url`; the password comes from AFD_REDIS_PASSWORD(_FILE) only."""
    from afd_async.teacher.credentials import load_secret

    if not cluster.redis_url:
        raise ValueError("cluster.redis_url is not set (afd run sets it for its roles; compose sets it in cluster=compose)")
    url = urlparse(cluster.redis_url)
    if url.scheme not in ("redis", "rediss"):
        raise ValueError(f"cluster.redis_url must start with redis:// or rediss://, got scheme {url.scheme!r}")
    password = load_secret("AFD_REDIS_PASSWORD", required=False)
    return redis.Redis(
        host=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        db=int((url.path or "/0").lstrip("/") or 0),
        password=password.reveal() if password is not None else None,
        ssl=url.scheme == "rediss",
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=5.0,
        health_check_interval=30,
    )


def tcp(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT, so role loops finish their current unit of work and exit."""
    stop = threading.Event()

    def handler(signum: int, _frame: Optional[object]) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
