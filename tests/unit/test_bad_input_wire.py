"""Malformed messages on real ZeroMQ sockets: counted, refused, and the peer keeps serving.

The case here is the one the property tests found: a well-framed message of the right kind
and schema whose `op` is not a string (a list) made `op in frozenset(...)` raise TypeError,
which is not a `MessageError`, so it escaped the I/O thread's handler and killed it (one
rogue DEALER could stop a weights publisher or a feeder for every learner)."""

from __future__ import annotations

import itertools
import threading

import torch
import zmq

from afd_async.codec.msg import pack
from afd_async.transport import Batch, FeedClient, FeedServer, WeightPublisher, WeightSubscriber
from afd_async.testing.waiting import wait_until

LOCAL = "tcp://127.0.0.1:0"


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


def _manifest(version: int, weights: dict[str, torch.Tensor]):
    import hashlib

    from afd_async.transport.weights_layout import Manifest, plan_layout

    entries, total = plan_layout(weights)
    blob = bytearray(total)
    for e in entries:
        blob[e.offset : e.offset + e.nbytes] = weights[e.name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    digests = (hashlib.sha256(bytes(blob)).digest(),)
    m = Manifest(version, "full", total, 1 << 20, tuple(entries), digests,
                 Manifest.top_digest(version, "full", total, 1 << 20, entries, digests))
    return m, bytes(blob)


def test_subscriber_refuses_chunk_replies_with_malformed_fields_and_keeps_the_last_good() -> None:
    """A publisher (compromised, or a buggy build) answering a chunk with non-int sizes or a
    non-int index: `WeightsRejected("layout")` / a retry, never a TypeError out of the actor."""
    from afd_async.transport import WeightsRejected
    from afd_async.transport.weights_layout import decode_wmsg, wmsg

    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    notify = ctx.socket(zmq.PUB)
    notify.setsockopt(zmq.LINGER, 0)
    nport = notify.bind_to_random_port("tcp://127.0.0.1")
    good = {"w": torch.arange(8, dtype=torch.float32)}
    state = {"version": 1, "bad": None}
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if not router.poll(20):
                continue
            ident, data = router.recv_multipart()
            msg = decode_wmsg(data)
            m, blob = _manifest(state["version"], good)
            if msg["op"] == "latest":
                router.send_multipart([ident, wmsg("manifest", rid=msg["rid"], manifest=m.to_wire())])
            elif state["bad"] == "sizes":
                router.send_multipart([ident, wmsg("chunk", rid=msg["rid"], version=m.version, index=0,
                                                   sizes=[str(len(blob))]), blob])
            elif state["bad"] == "index":
                router.send_multipart([ident, wmsg("chunk", rid=msg["rid"], version=m.version, index=[0],
                                                   sizes=[len(blob)]), blob])
            else:
                router.send_multipart([ident, wmsg("chunk", rid=msg["rid"], version=m.version, index=0,
                                                   sizes=[len(blob)]), blob])

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        with WeightSubscriber(f"tcp://127.0.0.1:{nport}", f"tcp://127.0.0.1:{port}", retry_s=0.2) as sub:
            assert sub.fetch_latest(timeout_s=10).version == 1
            state.update(version=2, bad="sizes")
            try:
                sub.fetch_latest(timeout_s=10)
                raise AssertionError("non-int chunk sizes were accepted")
            except WeightsRejected as e:
                assert e.reason == "layout" and e.version == 2
            state["bad"] = "index"  # ignored like a stray duplicate: retried until the deadline
            try:
                sub.fetch_latest(timeout_s=1.0)
                raise AssertionError("a non-int chunk index was accepted")
            except TimeoutError:
                pass
            assert sub.version == 1 and torch.equal(sub.current.state_dict["w"], good["w"])
            assert sub.stats.rejected == {"layout": 1}
            state["bad"] = None
            assert sub.fetch_latest(timeout_s=10).version == 2
    finally:
        stop.set()
        server.join(5)
        router.close()
        notify.close()
