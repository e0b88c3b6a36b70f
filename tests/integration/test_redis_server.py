from __future__ import annotations

import redis

from afd_async.store.redis_server import RedisServer


def test_private_server_survives_kill_with_aof(fresh_redis_server):
    c = redis.Redis(**fresh_redis_server.client_kwargs())
    c.set("k", "v")
    assert fresh_redis_server.port != 6379
    fresh_redis_server.kill()
    fresh_redis_server.start()
    c = redis.Redis(**fresh_redis_server.client_kwargs())
    assert c.get("k") == b"v"


def test_password_is_required_and_not_in_repr(tmp_path):
    with RedisServer(data_dir=str(tmp_path), password="s3cret-pw") as s:
        assert "s3cret" not in repr(s) and "s3cret" not in s.url
        anon = redis.Redis(host="127.0.0.1", port=s.port)
        try:
            anon.ping()
            raised = False
        except redis.AuthenticationError:
            raised = True
        assert raised
        assert redis.Redis(**s.client_kwargs()).ping()
