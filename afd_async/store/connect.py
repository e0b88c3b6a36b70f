"""Redis connections every role opens, from the cluster config (user, password, TLS; secrets from env/files)."""

from __future__ import annotations

import inspect
import os
from typing import Any, Mapping, Optional
from urllib.parse import urlparse

import redis
import redis.asyncio as aioredis

from afd_async.config.cluster import ClusterConfig
from afd_async.config.credentials import load_secret


def _no_setinfo() -> dict[str, None]:
    """No CLIENT SETINFO on connect: Redis 7.0 does not know it and the ACL users are not granted it."""
    if "driver_info" in inspect.signature(redis.Redis.__init__).parameters:  # redis-py >= 7
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}


_NO_SETINFO = _no_setinfo()
# redis-py reads replies in chunks of `socket_read_size` (default 32 KB) and feeds each to hiredis: a
# 100 KB pair then costs several recv calls and parser feeds. One MiB per connection lets a batch of
# pairs arrive in a few reads (2.5x the pipelined SET/GET rate of 100 KB values, `bench_replay.py`).
READ_BUFFER_BYTES = 1 << 20


def redis_connection_kwargs(cluster: ClusterConfig, *, env: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """redis-py keyword arguments for `cluster.redis_url`, with this process's credentials and TLS files.

    The user comes from `AFD_REDIS_USER` (per-role ACL users, `afd_async.security.redis_acl`;
    unset: the default user), the password from `AFD_REDIS_PASSWORD(_FILE)` only,
    TLS from a `rediss://` URL plus `cluster.redis_tls_*` files. The returned dict
    holds the plain password: pass it to the client, never log it.
    """
    env = os.environ if env is None else env
    if not cluster.redis_url:
        raise ValueError("cluster.redis_url is not set (afd run sets it for its roles; compose sets it in cluster=compose)")
    url = urlparse(cluster.redis_url)
    if url.scheme not in ("redis", "rediss"):
        raise ValueError(f"cluster.redis_url must start with redis:// or rediss://, got scheme {url.scheme!r}")
    password = load_secret("AFD_REDIS_PASSWORD", env=env, required=False)
    kw: dict[str, Any] = dict(
        host=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        db=int((url.path or "/0").lstrip("/") or 0),
        username=env.get("AFD_REDIS_USER") or None,
        password=password.reveal() if password is not None else None,
        socket_connect_timeout=5.0,
        socket_read_size=READ_BUFFER_BYTES,
        health_check_interval=30,
        **_NO_SETINFO,
    )
    if url.scheme == "rediss":
        kw.update(ssl=True, ssl_ca_certs=cluster.redis_tls_ca_file, ssl_certfile=cluster.redis_tls_cert_file,
                  ssl_keyfile=cluster.redis_tls_key_file, ssl_cert_reqs="required")
    return kw


def redis_client(cluster: ClusterConfig, *, socket_timeout_s: float = 10.0) -> redis.Redis:
    """A client for `cluster.redis_url` (credentials and TLS: `redis_connection_kwargs`)."""
    return redis.Redis(**redis_connection_kwargs(cluster), socket_timeout=socket_timeout_s)


def async_redis_client(cluster: ClusterConfig) -> aioredis.Redis:
    """An asyncio client for `cluster.redis_url`, same credentials and TLS as `redis_client`.

    `socket_timeout` is left unset: blocking pops wait longer than one op, so each
    call carries its own `asyncio.wait_for` bound instead (see `teacher.actor`).
    """
    return aioredis.Redis(**redis_connection_kwargs(cluster))

