"""Shared fixtures: real services on loopback, small torch thread count."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from afd_async.testing.redis_server import RedisServer

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def redis_server():
    """One private redis-server per test session (tests must not use port 6379)."""
    with RedisServer() as server:
        yield server


@pytest.fixture()
def redis_client(redis_server):
    """A client on the session server with an empty database for this test."""
    import redis

    client = redis.Redis(**redis_server.client_kwargs())
    client.flushall()
    yield client
    client.close()


@pytest.fixture()
def fresh_redis_server(tmp_path):
    """A redis-server of this test's own, which the test may kill and restart."""
    with RedisServer(data_dir=str(tmp_path / "redis"), appendonly=True) as server:
        yield server
