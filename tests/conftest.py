"""Shared fixtures: real services on loopback, small torch thread count."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from hypothesis import settings

from afd_async.store.redis_server import RedisServer

torch.set_num_threads(1)

# Property tests draw the same examples on every run ("repeatable"), so a clean clone gives the
# verdict the last green run gave, and a red CI means the code changed, not the dice. Search
# for new counter-examples on purpose with HYPOTHESIS_PROFILE=explore (fresh random examples on each
# run; loop it), and pin each one found with @example next to the property.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


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
