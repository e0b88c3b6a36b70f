"""`replay.direct_read` on a real redis-server (RESP2 and RESP3, errors, a lost connection, TLS), and the
replay's reads, claims, acks and trims as the feeder's ACL user."""

from __future__ import annotations

import shutil

import pytest
import redis

from afd_async.replay import PairReader, PairWriter, trim_acked
from afd_async.replay.direct_read import execute_direct
from afd_async.replay.examples import make_pair, same_pair
from afd_async.security.redis_acl import user_name
from afd_async.store.keys import RunKeys
from afd_async.store.redis_server import RedisServer, TlsFiles

BIG = bytes(range(256)) * 400  # 100 KB: received into its own buffer


@pytest.mark.parametrize("protocol", [2, 3])
def test_replies_of_every_shape_and_the_connection_stays_in_step(redis_server, protocol: int) -> None:
    r = redis.Redis(**redis_server.client_kwargs(), protocol=protocol)
    r.flushall()
    r.set("big", BIG)
    r.hset("h", mapping={"a": "1"})
    got = execute_direct(r, ["GET", "big"])
    assert isinstance(got, bytearray) and got == BIG
    assert execute_direct(r, ["ECHO", "small"]) == b"small"
    assert execute_direct(r, ["GET", "missing"]) is None
    assert execute_direct(r, ["INCR", "n"]) == 1
    assert execute_direct(r, ["PING"]) in (b"PONG", "PONG")
    hgetall = execute_direct(r, ["HGETALL", "h"])
    assert hgetall == ({b"a": b"1"} if protocol == 3 else [b"a", b"1"])
    r.xadd("s", {"m": b"x", "t": BIG})
    r.xgroup_create("s", "g", id="0")
    reply = execute_direct(r, ["XREADGROUP", "GROUP", "g", "c", "COUNT", 5, "STREAMS", "s", ">"])
    entries = next(iter(reply.values())) if protocol == 3 else reply[0][1]
    (sid, fields), = entries
    assert fields[:3] == [b"m", b"x", b"t"] and fields[3] == BIG
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        execute_direct(r, ["LPUSH", "big", "x"])
    with pytest.raises(redis.ResponseError, match="NOGROUP"):
        execute_direct(r, ["XREADGROUP", "GROUP", "nope", "c", "STREAMS", "s", ">"])
    assert r.get("big") == BIG and r.echo("after") == b"after"  # redis-py's own parser is still in step
    assert execute_direct(r, ["GET", "big"], direct_min_bytes=1 << 30) == BIG  # through the (growing) buffer
    r.close()


def test_a_connection_the_server_closed_is_reopened_and_the_command_retried(redis_client, redis_server) -> None:
    redis_client.set("big", BIG)
    conn_id = execute_direct(redis_client, ["CLIENT", "ID"])
    with redis.Redis(**redis_server.client_kwargs()) as other:
        assert other.client_kill_filter(_id=conn_id) == 1
    assert execute_direct(redis_client, ["GET", "big"]) == BIG
    assert execute_direct(redis_client, ["CLIENT", "ID"]) != conn_id


def test_the_replay_runs_as_its_acl_users(acl_server) -> None:
    server, passwords = acl_server
    keys = RunKeys()

    def login(role: str) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=server.port, username=user_name(role), password=passwords[role])

    actor, feeder = login("student-actor"), login("feeder")
    pairs = [make_pair(i, payload_bytes=100 << 10) for i in range(4)]
    with PairWriter(actor, stream=keys.pairs) as w:
        w.write_many(pairs)
        w.write(pairs[1])  # a retry: dropped by the claim script
    rd = PairReader(feeder, stream=keys.pairs, group="student", consumer="feeder")
    got = rd.read(count=10, block_ms=100)
    assert all(same_pair(a, b) for a, (_, b) in zip(pairs, got)) and rd.counters["duplicates"] == 1
    assert rd.ack([sid for sid, _ in got]) == [sid for sid, _ in got]
    assert trim_acked(feeder, keys.pairs) == 5


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI makes the test certificates")
def test_pairs_round_trip_over_tls(tmp_path) -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("tls_helpers", Path(__file__).with_name("test_security_tls.py"))
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)  # type: ignore[union-attr]
    pki = helpers.make_pki(tmp_path / "pki", "afd")
    files = TlsFiles(cert=pki["server.crt"], key=pki["server.key"], ca=pki["ca.crt"], auth_clients="yes")
    with RedisServer(data_dir=str(tmp_path / "data"), tls=files) as server:
        r = redis.Redis(**server.client_kwargs(), socket_timeout=10)
        pairs = [make_pair(i, payload_bytes=100 << 10) for i in range(3)]
        with PairWriter(r, stream="tls:pairs") as w:
            w.write_many(pairs)
        got = PairReader(r, stream="tls:pairs", group="g", consumer="c").read(count=10, block_ms=100)
        assert len(got) == 3 and all(same_pair(a, b) for a, (_, b) in zip(pairs, got))
        r.close()
