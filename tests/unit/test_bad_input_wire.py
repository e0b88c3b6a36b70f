"""Malformed messages on real ZeroMQ sockets: counted, refused, and the peer keeps serving.

The case here is the one the property tests found: a well-framed message of the right kind
and schema whose `op` is not a string (a list) made `op in frozenset(...)` raise TypeError,
which is not a `MessageError`, so it escaped the I/O thread's handler and killed it (one
rogue DEALER could stop a weights publisher or a feeder for every learner)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import torch
import zmq

from afd_async.codec.msg import pack
from afd_async.transport import Batch, FeedClient, FeedServer, WeightPublisher, WeightSubscriber

LOCAL = "tcp://127.0.0.1:0"


def wait_until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        threading.Event().wait(0.005)


def _rogue(kind: int, endpoint: str) -> zmq.Socket:
    s = zmq.Context.instance().socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def test_weights_publisher_survives_non_string_ops_and_keeps_serving() -> None:
    weights = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4)}
    with WeightPublisher(LOCAL, LOCAL) as pub:
        pub.publish(1, weights)
        rogue = _rogue(zmq.DEALER, pub.fetch_endpoint)
        for op in (["latest"], {"op": 1}, 7, None):
            rogue.send(pack({"kind": "weights", "schema": 1, "op": op, "rid": 1}))
        wait_until(lambda: pub.stats.rejected == 4)
        rogue.close()
        with WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
            got = sub.wait_for_version(1, timeout_s=10)
            assert torch.equal(got.state_dict["w"], weights["w"])


def test_weights_subscriber_counts_a_non_string_announce_and_still_updates() -> None:
    ctx = zmq.Context.instance()
    rogue_pub = ctx.socket(zmq.PUB)
    rogue_pub.setsockopt(zmq.LINGER, 0)
    port = rogue_pub.bind_to_random_port("tcp://127.0.0.1")
    with WeightPublisher(LOCAL, LOCAL) as pub, WeightSubscriber(f"tcp://127.0.0.1:{port}", pub.fetch_endpoint) as sub:
        pub.publish(1, {"w": torch.ones(3)})

        def counted() -> bool:
            rogue_pub.send(pack({"kind": "weights", "schema": 1, "op": ["announce"], "version": 99}))
            sub.poll_announcements()
            return bool((sub.stats.rejected or {}).get("schema"))

        wait_until(counted)
        assert sub.announced == -1  # the rogue's "version 99" was not believed
        assert sub.wait_for_version(1, timeout_s=10).version == 1
    rogue_pub.close()


class _Source:
    def __init__(self) -> None:
        self._i = itertools.count()

    def __call__(self, rank: int) -> Batch:
        i = next(self._i)
        return Batch({"x": torch.full((2,), float(i))}, {"i": i}, token=i)


def test_feed_server_survives_non_string_ops_and_keeps_serving() -> None:
    with FeedServer("tcp://127.0.0.1:0", _Source(), peer_timeout_s=1.0) as server:
        rogue = _rogue(zmq.DEALER, server.endpoint)
        for op in (["hello"], {"credit": 1}, 3.5):
            rogue.send(pack({"kind": "feed", "schema": 1, "op": op, "rank": 0, "n": 1}))
        wait_until(lambda: server.stats().rejected == 3)
        rogue.close()
        with FeedClient(server.endpoint, rank=0, window=1) as client:
            assert client.next(timeout_s=10).meta["i"] == 0
