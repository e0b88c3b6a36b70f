"""`store.pipeline` on a real redis-server: framing of split arguments, errors, transactions, the hiredis parser."""

from __future__ import annotations

import numpy as np
import pytest
import redis
from redis._parsers.hiredis import _HiredisParser

from afd_async.config.cluster import ClusterConfig
from afd_async.store.connect import READ_BUFFER_BYTES, redis_client
from afd_async.store.pipeline import execute, frame


def test_a_list_of_buffers_is_one_argument_sent_back_to_back(redis_client) -> None:
    big = np.arange(40_000, dtype=np.uint8)  # above the zero-copy cutoff: handed to the socket as it is
    parts = [b"head:", memoryview(big), bytearray(b":tail")]
    assert execute(redis_client, [["SET", "k", parts], ["GET", "k"], ["STRLEN", "k"], ["ECHO", 12]]) == [
        b"OK", b"head:" + big.tobytes() + b":tail", 5 + 40_000 + 5, b"12"]
    wire = frame([["SET", "k", parts]])
    assert any(isinstance(p, memoryview) and p.obj is big for p in wire)  # not copied into the framing
    assert execute(redis_client, []) == []


def test_an_error_is_raised_after_every_reply_was_read(redis_client) -> None:
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        execute(redis_client, [["SET", "s", "x"], ["LPUSH", "s", "y"], ["SET", "after", "1"]])
    assert redis_client.get("after") == b"1"  # the command after the failing one ran
    assert execute(redis_client, [["GET", "s"]]) == [b"x"]  # and the connection is still in step


def test_transaction_runs_all_or_reports_the_refused_command(redis_client) -> None:
    assert execute(redis_client, [["SET", "a", "1"], ["INCR", "a"]], transaction=True) == [b"OK", 2]
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        execute(redis_client, [["SET", "b", "1"], ["INCR"]], transaction=True)
    assert redis_client.exists("b") == 0  # refused at queue time: nothing ran
    assert execute(redis_client, [["GET", "a"]]) == [b"2"]


def test_bad_argument_types_are_refused_before_sending() -> None:
    for bad in (True, 1.5, None, [b"ok", "not bytes"]):
        with pytest.raises(TypeError):
            frame([["SET", "k", bad]])


def test_role_clients_parse_with_hiredis_and_a_large_read_buffer(redis_server) -> None:
    r = redis_client(ClusterConfig(redis_url=redis_server.url))
    conn = r.connection_pool.get_connection()
    try:
        assert isinstance(conn._parser, _HiredisParser) and len(conn._parser._buffer) == READ_BUFFER_BYTES
    finally:
        r.connection_pool.release(conn)
        r.close()


def test_a_connection_the_server_closed_is_reopened_and_the_batch_retried(redis_client, redis_server) -> None:
    (conn_id,) = execute(redis_client, [["CLIENT", "ID"]])
    with redis.Redis(**redis_server.client_kwargs()) as other:
        assert other.client_kill_filter(_id=conn_id) == 1
    assert execute(redis_client, [["SET", "k", "v"], ["GET", "k"]], transaction=True) == [b"OK", b"v"]
    (new_id,) = execute(redis_client, [["CLIENT", "ID"]])
    assert new_id != conn_id
