"""A learner whose connection carries nothing gets a new one (`FeedClient(silence_s=...)`).

libzmq keeps a connection whose peer accepted TCP but never answers (a handshake stuck with a
peer that went away: the accepted socket outlives the listener); for `ZMQ_HANDSHAKE_IVL`
(30 s) nothing else is tried. The feeder answers every ping, so a client that hears nothing
for `silence_s` makes its socket anew and says hello again. Both sides of that are pinned
here: with the rule off the learner stays cut off from a feeder that is up; with it on it
gets its batch."""

from __future__ import annotations

import socket
import threading

import pytest
import torch

from afd_async.transport import Batch, FeedClient, FeedServer, TransportTimeout


def black_hole(port: int = 0) -> tuple[socket.socket, list[socket.socket], threading.Thread]:
    """A TCP listener that accepts and then says nothing; the accepted sockets are kept open."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)
    accepted: list[socket.socket] = []

    def accept_one() -> None:
        conn, _ = srv.accept()
        accepted.append(conn)

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    return srv, accepted, thread


def batch(rank: int) -> Batch:
    return Batch({"x": torch.ones(2)}, {"i": 1}, token=1)


@pytest.mark.parametrize("silence_s", [0.0, 1.0])
def test_a_silent_connection_is_replaced_only_with_the_silence_rule(silence_s: float) -> None:
    srv, accepted, thread = black_hole()
    port = srv.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    with FeedClient(endpoint, rank=0, window=1, heartbeat_s=0.25, silence_s=silence_s) as learner:
        thread.join(10)
        assert accepted, "the learner never connected to the black hole"
        srv.close()  # the listener goes; the accepted connection stays open and silent
        try:
            with FeedServer(endpoint, batch, peer_timeout_s=2.0):
                if silence_s:
                    got = learner.next(timeout_s=20)
                    assert got.meta["i"] == 1 and learner.stats.reconnects >= 1
                else:  # libzmq waits out its 30 s handshake timeout on the silent connection
                    with pytest.raises(TransportTimeout):
                        learner.next(timeout_s=4)
                    assert learner.stats.reconnects == 0
        finally:
            for conn in accepted:
                conn.close()
