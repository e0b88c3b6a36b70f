"""Trimming never deletes an entry some group has not acknowledged."""

from __future__ import annotations

import threading

import redis

from afd_async.replay import PairReader, PairWriter, oldest_needed_id, trim_acked
from afd_async.replay.examples import make_pair
from afd_async.replay.trim import parse_id

S = "t:pairs"


def _ids(r) -> list[str]:
    return [sid.decode() for sid, _ in r.xrange(S)]


def test_trim_waits_for_the_slow_group(redis_client) -> None:
    assert trim_acked(redis_client, S) == 0  # no stream
    with PairWriter(redis_client, stream=S) as w:
        ids = [w.write(make_pair(i, payload_bytes=256)) for i in range(10)]
    assert trim_acked(redis_client, S) == 0  # no groups: nobody has read anything
    fast = PairReader(redis_client, stream=S, group="fast", consumer="f")
    slow = PairReader(redis_client, stream=S, group="slow", consumer="s")
    fast.ack([sid for sid, _ in fast.read(count=100)])
    got = slow.read(count=3)
    slow.ack([got[0][0], got[2][0]])  # entry 1 stays pending, entries 3.. undelivered
    assert oldest_needed_id(redis_client, S) == parse_id(ids[1])
    assert trim_acked(redis_client, S) == 1
    assert _ids(redis_client) == ids[1:]
    slow.ack([got[1][0]])
    assert trim_acked(redis_client, S) == 2  # up to the first undelivered entry
    assert _ids(redis_client) == ids[3:]
    rest = slow.read(count=100)
    assert [sid for sid, _ in rest] == ids[3:]
    assert trim_acked(redis_client, S) == 0  # delivered but pending
    slow.ack([sid for sid, _ in rest])
    assert trim_acked(redis_client, S) == 7 and _ids(redis_client) == []


def test_concurrent_trimming_never_loses_unread_pairs(redis_server, redis_client) -> None:
    n = 60
    with PairWriter(redis_client, stream=S) as w:
        for i in range(n):
            w.write(make_pair(i, payload_bytes=256))
    PairReader(redis_client, stream=S, group="fast", consumer="f")
    PairReader(redis_client, stream=S, group="slow", consumer="s")
    seen: dict[str, list[str]] = {"fast": [], "slow": []}
    done = threading.Event()

    def consume(group: str, batch: int) -> None:
        r = redis.Redis(**redis_server.client_kwargs(), socket_timeout=5)
        rd = PairReader(r, stream=S, group=group, consumer="c")
        while len(seen[group]) < n:
            got = rd.read(count=batch, block_ms=200)
            seen[group] += [p.pair_id for _, p in got]
            rd.ack([sid for sid, _ in got])
        r.close()

    def trimmer() -> None:
        r = redis.Redis(**redis_server.client_kwargs(), socket_timeout=5)
        while not done.is_set():
            trim_acked(r, S)
        r.close()

    threads = [threading.Thread(target=consume, args=("fast", 7)), threading.Thread(target=consume, args=("slow", 2))]
    t = threading.Thread(target=trimmer)
    for th in [*threads, t]:
        th.start()
    for th in threads:
        th.join(timeout=60)
    done.set()
    t.join(timeout=10)
    assert sorted(seen["fast"]) == sorted(seen["slow"]) == sorted(f"pair-{i}" for i in range(n))
    trim_acked(redis_client, S)
    assert redis_client.xlen(S) == 0
