"""Shared fixtures: real services on loopback, small torch thread count."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from hypothesis import settings

from afd_async.security.redis_acl import generate_passwords, user_name, write_acl_file
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


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory):
    """A redis-server with the compose roles' ACL users (afd_async/security/redis_acl.py); yields (server, passwords)."""
    d = tmp_path_factory.mktemp("acl")
    passwords = generate_passwords()
    write_acl_file(d / "users.acl", passwords)
    with RedisServer(data_dir=str(d / "data"), acl_file=str(d / "users.acl"), username=user_name("admin"),
                     password=passwords["admin"]) as server:
        yield server, passwords
