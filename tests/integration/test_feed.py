"""Feed over real ZeroMQ on loopback: credits, round trips, ranks, dead learners, foreign bytes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch
import zmq

from afd_async.codec.msg import pack
from afd_async.transport import Batch, FeedClient, FeedEnded, FeedServer, TransportTimeout
from afd_async.testing.waiting import wait_until
from afd_async.transport.feed_wire import control, encode_batch

FAST = {"peer_timeout_s": 1.0}


class Source:
    """A thread-safe counting batch source; batch i carries token i."""

    def __init__(self, limit: int | None = None) -> None:
        self.calls: list[int] = []
        self._i = itertools.count()
        self._lock = threading.Lock()
        self.limit = limit

    def __call__(self, rank: int) -> Batch:
        with self._lock:
            i = next(self._i)
            if self.limit is not None and i >= self.limit:
                raise StopIteration
            self.calls.append(rank)
        return Batch({"x": torch.full((2, 3), float(i))}, {"i": i}, token=i)


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_tensors_round_trip_exactly(tmp_path: Any, transport: str) -> None:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "bf16": torch.randn(3, 5, generator=g).to(torch.bfloat16),
        "f16_noncontig": torch.randn(4, 6, generator=g).half().t(),
        "f32_strided": torch.randn(8, 8, generator=g)[::2, 1::3],
        "i64": torch.arange(-5, 5),
        "u8_video": torch.randint(0, 255, (2, 4, 4, 3), dtype=torch.uint8, generator=g),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.empty(0, 7),
        "np_f64": np.linspace(0, 1, 9).reshape(3, 3),
    }
    sent = Batch(tensors, {"pair_ids": ["a", "b"], "policy_version": 7}, token="t")
    endpoint = "tcp://127.0.0.1:0" if transport == "tcp" else f"ipc://{tmp_path}/feed.sock"
    with FeedServer(endpoint, lambda rank: sent, **FAST) as server, \
            FeedClient(server.endpoint, rank=0, window=1) as client:
        got = client.next(timeout_s=10)
    assert got.meta == {"pair_ids": ["a", "b"], "policy_version": 7}
    assert set(got.tensors) == set(tensors)
    for name, t in tensors.items():
        r = got.tensors[name]
        assert type(r) is type(t), name
        if isinstance(t, torch.Tensor):
            assert r.dtype == t.dtype and r.shape == t.shape and torch.equal(r, t), name
        else:
            assert r.dtype == t.dtype and np.array_equal(r, t), name


def test_no_credit_means_no_batches_and_queue_never_exceeds_credit() -> None:
    source = Source()
    with FeedServer("tcp://127.0.0.1:0", source, max_credit=4, **FAST) as server, \
            FeedClient(server.endpoint, rank=0, window=0, heartbeat_s=0.1) as client:
        wait_until(lambda: 0 in server.stats().credits)  # registered, zero credit
        with pytest.raises(TransportTimeout, match="no batch"):
            client.next(timeout_s=0.3)
        assert source.calls == [] and server.stats().batches_sent == 0
        client.request(2)
        got = [client.next(timeout_s=5).seq for _ in range(2)]
        with pytest.raises(TransportTimeout):
            client.next(timeout_s=0.3)
        assert len(source.calls) == 2 and len(set(got)) == 2
        client.request(100)  # clamped to max_credit
        for _ in range(4):
            client.next(timeout_s=5)
        with pytest.raises(TransportTimeout):
            client.next(timeout_s=0.3)
        assert len(source.calls) == 6 and server.stats().batches_sent == 6


def test_window_bounds_prefetch_under_a_slow_learner() -> None:
    source = Source()
    with FeedServer("tcp://127.0.0.1:0", source, **FAST) as server, \
            FeedClient(server.endpoint, rank=0, window=3, heartbeat_s=0.1) as client:
        for step in range(20):
            batch = client.next(timeout_s=5)
            s = server.stats()
            assert s.queued.get(0, 0) <= s.credits.get(0, 0) <= 3
            # produced = received by the learner + at most the window in flight or queued
            assert len(source.calls) <= step + 1 + 3
            client.ack(batch)
        wait_until(lambda: server.stats().acked == 20)


def test_several_ranks_get_disjoint_batches() -> None:
    source = Source()
    acked: list[tuple[int, int]] = []
    lock = threading.Lock()

    def on_ack(rank: int, token: int) -> None:
        with lock:
            acked.append((rank, token))

    got: dict[int, list[int]] = {}
    with FeedServer("tcp://127.0.0.1:0", source, on_ack=on_ack, **FAST) as server:
        clients = [FeedClient(server.endpoint, rank=r, window=2, heartbeat_s=0.1).__enter__() for r in range(3)]
        try:
            for c in clients:
                got[c.rank] = []
                for _ in range(6):
                    b = c.next(timeout_s=5)
                    got[c.rank].append(b.meta["i"])
                    c.ack(b)
            wait_until(lambda: len(acked) == 18)
        finally:
            for c in clients:
                c.close()
    all_items = [i for items in got.values() for i in items]
    assert len(all_items) == len(set(all_items)) == 18
    assert {r: sorted(t for rr, t in acked if rr == r) for r in range(3)} == {r: sorted(v) for r, v in got.items()}
    assert set(source.calls) == {0, 1, 2}


def test_end_of_feed_raises_feed_ended() -> None:
    with FeedServer("tcp://127.0.0.1:0", Source(limit=3), **FAST) as server, \
            FeedClient(server.endpoint, rank=0, window=2) as client:
        assert [b.meta["i"] for b in client] == [0, 1, 2]
        with pytest.raises(FeedEnded):
            client.next(timeout_s=1)


_LEARNER = """
import sys
from afd_async.transport import FeedClient
with FeedClient(sys.argv[1], rank=0, window=2, heartbeat_s=0.1) as feed:
    for _ in range(3):
        b = feed.next(timeout_s=20)
        print(b.meta["i"], flush=True)
    sys.stdin.readline()  # hold the batches unacked until killed
"""


def test_learner_process_killed_its_unacked_batches_go_to_on_lost() -> None:
    source = Source()
    lost: dict[int, list[int]] = {}
    acked: list[int] = []
    with FeedServer("tcp://127.0.0.1:0", source, on_ack=lambda r, t: acked.append(t),
                    on_lost=lambda r, t: lost.setdefault(r, []).extend(t), peer_timeout_s=1.0) as server:
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_LEARNER), server.endpoint],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            received = [int(proc.stdout.readline()) for _ in range(3)]
            assert received == sorted(received)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            t_killed = time.monotonic()
            wait_until(lambda: 0 in lost, timeout_s=5)
            assert time.monotonic() - t_killed < 3.0
        finally:
            proc.kill()
            proc.wait(10)
        s = server.stats()
        assert 0 not in s.credits and 0 not in s.unacked  # the rank's credits are dropped
    produced = set(range(len(source.calls)))
    assert acked == [] and set(received) <= set(lost[0])
    assert sorted(lost[0]) == sorted(produced)  # every produced batch came back exactly once


def test_foreign_bytes_to_the_server_are_rejected_and_counted() -> None:
    with FeedServer("tcp://127.0.0.1:0", Source(), **FAST) as server:
        ctx = zmq.Context.instance()
        rogue = ctx.socket(zmq.DEALER)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.connect(server.endpoint)
        rogue.send(b"GET / HTTP/1.1\r\n\r\n")
        rogue.send(pack({"kind": "feed", "schema": 99, "op": "hello", "rank": 0}))
        rogue.send(pack({"kind": "feed", "schema": 1, "op": "credit", "n": -3}))
        rogue.send_multipart([b"two", b"frames"])
        wait_until(lambda: server.stats().rejected == 4)
        rogue.send(control("credit", n=1))  # well-formed but never said hello
        assert rogue.poll(5000) and b"reset" in rogue.recv()
        rogue.close()
        with FeedClient(server.endpoint, rank=0, window=1) as client:
            assert client.next(timeout_s=5).meta["i"] == 0


def test_foreign_bytes_to_the_client_are_rejected_and_counted() -> None:
    ctx = zmq.Context.instance()
    rogue = ctx.socket(zmq.ROUTER)
    rogue.setsockopt(zmq.LINGER, 0)
    port = rogue.bind_to_random_port("tcp://127.0.0.1")
    with FeedClient(f"tcp://127.0.0.1:{port}", rank=0, window=1) as client:
        assert rogue.poll(5000)
        ident = rogue.recv_multipart()[0]  # hello
        rogue.send_multipart([ident, b"\xc1garbage"])
        rogue.send_multipart([ident, pack({"kind": "feed", "schema": 2, "op": "batch"})])
        frames = encode_batch(1, Batch({"x": torch.ones(3)}))
        rogue.send_multipart([ident, frames[0]])  # header without its tensor frame
        rogue.send_multipart([ident, *encode_batch(2, Batch({"x": torch.arange(4)}, {"ok": True}))])
        got = client.next(timeout_s=5)
        assert got.seq == 2 and torch.equal(got.tensors["x"], torch.arange(4))
        assert client.stats.rejected == 3
    rogue.close()


def test_learner_reconnects_to_a_restarted_feeder(tmp_path: Any) -> None:
    endpoint = f"ipc://{tmp_path}/feed.sock"
    with FeedClient(endpoint, rank=0, window=2, heartbeat_s=0.05) as client:
        with FeedServer(endpoint, Source(), **FAST):
            client.ack(client.next(timeout_s=5))
        with FeedServer(endpoint, Source(), **FAST) as restarted:
            wait_until(lambda: client.stats.resets >= 1)  # a ping to the new feeder earns a reset → hello
            got = [client.next(timeout_s=5) for _ in range(3)]
            assert 0 in [b.meta["i"] for b in got]  # batches of the new feeder
            assert restarted.stats().credits.get(0, 0) <= 2


def test_curve_client_without_an_allowed_key_gets_nothing() -> None:
    from afd_async.transport import CurveClientKeys, CurveServerKeys

    server_pub, server_sec = zmq.curve_keypair()
    good_pub, good_sec = zmq.curve_keypair()
    bad_pub, bad_sec = zmq.curve_keypair()
    source = Source()
    keys = CurveServerKeys(server_pub, server_sec, allowed_clients=[good_pub])
    with FeedServer("tcp://127.0.0.1:0", source, curve=keys, **FAST) as server:
        with FeedClient(server.endpoint, rank=1, window=1, curve=CurveClientKeys(server_pub, bad_pub, bad_sec)) as bad, \
                pytest.raises(TransportTimeout):
            bad.next(timeout_s=0.5)
        with FeedClient(server.endpoint, rank=2, window=1) as plain, pytest.raises(TransportTimeout):
            plain.next(timeout_s=0.3)
        assert source.calls == [] and server.stats().credits == {}
        with FeedClient(server.endpoint, rank=0, window=1, curve=CurveClientKeys(server_pub, good_pub, good_sec)) as ok:
            assert ok.next(timeout_s=5).meta["i"] == 0
