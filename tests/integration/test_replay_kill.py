"""A consumer process is SIGKILLed mid-batch; another reclaims its pairs: nothing lost, nothing trained twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from afd_async.replay import PairReader, PairWriter
from afd_async.replay.examples import make_pair

S = "t:pairs"
REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys, time, redis
    from afd_async.replay import PairReader
    r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=10)
    rd = PairReader(r, stream=sys.argv[2], group="student", consumer="doomed")
    batch = rd.read(count=5, block_ms=5000)
    for sid, pair in batch[:2]:          # trains two pairs of its batch and commits them
        r.rpush("trained", pair.pair_id)
        assert rd.ack([sid]) == [sid]
    r.rpush("ready", len(batch))         # then is killed while training the other three
    time.sleep(60)
    """
)


@pytest.mark.parametrize("inline_max_bytes", [1 << 30, 0])
def test_sigkill_mid_batch_then_reclaim(redis_server, redis_client, inline_max_bytes: int) -> None:
    with PairWriter(redis_client, stream=S, inline_max_bytes=inline_max_bytes) as w:
        for i in range(12):
            w.write(make_pair(i, payload_bytes=8192))
        for i in (3, 7):
            w.write(make_pair(i, payload_bytes=8192))  # duplicates from a retried write
    PairReader(redis_client, stream=S, group="student", consumer="survivor")  # creates the group
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(redis_server.port), S], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        ready = redis_client.blpop(["ready"], timeout=60)
        assert ready is not None, "child consumer did not read its batch"
        assert int(ready[1]) == 5
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    pending = redis_client.xpending(S, "student")
    assert pending["pending"] == 3 and pending["consumers"][0]["name"] == b"doomed"

    survivor = PairReader(redis_client, stream=S, group="student", consumer="survivor")
    reclaimed = survivor.reclaim(min_idle_ms=0)  # the doomed consumer is known dead
    assert len(reclaimed) == 3
    batches = [reclaimed]
    while batch := survivor.read(count=4, block_ms=50):
        batches.append(batch)
    for batch in batches:
        for sid, pair in batch:
            redis_client.rpush("trained", pair.pair_id)
        assert survivor.ack([sid for sid, _ in batch]) == [sid for sid, _ in batch]

    trained = Counter(x.decode() for x in redis_client.lrange("trained", 0, -1))
    assert set(trained) == {f"pair-{i}" for i in range(12)}  # nothing lost
    assert max(trained.values()) == 1  # nothing trained twice (duplicates dropped too)
    assert survivor.counters["duplicates"] == 2
    assert redis_client.xpending(S, "student")["pending"] == 0
