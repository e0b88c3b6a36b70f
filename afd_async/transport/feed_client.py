"""A learner rank's end of the feed: a DEALER with a background I/O thread.

The I/O thread says hello, grants credits, sends heartbeats and receives and
decodes batches while the learner steps, so `next()` only takes a ready batch
from a local queue: collation happens in the feeder, transfer and decoding
happen off the learner's critical path. The local queue holds at most the
credits granted (`window` plus any `request(n)`), never more.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Optional

import zmq

from afd_async.codec.msg import MessageError
from afd_async.transport._handshake import ClientSocket
from afd_async.transport._sockets import CurveClientKeys, Waker, make_socket
from afd_async.transport.errors import FeedEnded, TransportTimeout
from afd_async.transport.feed_wire import ReceivedBatch, control, decode_batch, decode_control

__all__ = ["FeedClient", "FeedClientStats"]

log = logging.getLogger(__name__)
_END = object()


@dataclass
class FeedClientStats:
    """Counters of one learner rank's feed (exported as `afd_*_learner_batch_wait_seconds` etc.)."""

    batches: int = 0
    bytes: int = 0
    rejected: int = 0  # foreign bytes, unknown schema/op, malformed batches
    resets: int = 0  # the feeder forgot us (restart) and we said hello again
    waits: int = 0
    wait_seconds: float = 0.0
    timeouts: int = 0
    reconnects: int = 0  # sockets made anew: a failed CURVE handshake (e.g. a plain-TCP impostor) or a silent feeder


class FeedClient:
    """Receives batches for one learner rank from a `FeedServer`.

    Call order:

        with FeedClient(endpoint, rank=rank, window=2) as feed:  # hello + credit(window)
            while training:
                batch = feed.next(timeout_s=60)                  # grants 1 more credit
                loss = step(batch.tensors, batch.meta)
                feed.ack(batch)                                  # feeder acks upstream
        # exit: bye; batches not acked go to the feeder's on_lost

    Args:
        endpoint: the feeder's `FeedServer.endpoint`.
        rank: this learner rank; one connection per rank.
        window: credits kept outstanding automatically (prefetch depth); 0 means
            the learner grants credits itself with `request(n)`.
        heartbeat_s: ping period; must be well below the server's `peer_timeout_s`.
        auto_ack: ack each batch as `next()` returns it (at-most-once upstream).
        curve: CURVE client keys; None for plain TCP. A CURVE socket whose handshake
            fails (libzmq then gives up on it) is made anew after a bounded backoff and
            says hello again, as a new connection of this rank (`_handshake.ClientSocket`).
        silence_s: the feeder answers every ping; when it has said nothing for this long
            (and this socket is at least that old) the socket is made anew and says hello
            again, so a connection that libzmq keeps but that carries nothing (a handshake
            stuck with a peer that went away, a peer that lost us) cannot cut the learner
            off for good. The feeder then hands this rank's unacked batches back in order.
            Default: 5 heartbeats; 0 turns it off.
    """

    def __init__(self, endpoint: str, *, rank: int, window: int = 2, heartbeat_s: float = 1.0,
                 auto_ack: bool = False, curve: Optional[CurveClientKeys] = None,
                 silence_s: Optional[float] = None) -> None:
        if rank < 0 or window < 0 or heartbeat_s <= 0:
            raise ValueError("rank and window must be >= 0 and heartbeat_s > 0")
        silence_s = 5 * heartbeat_s if silence_s is None else silence_s
        if silence_s and silence_s < 2 * heartbeat_s:
            raise ValueError(f"silence_s must be 0 (off) or at least 2 heartbeats, got {silence_s}")
        self.rank, self.window, self._hb, self._auto_ack = rank, window, heartbeat_s, auto_ack
        self._silence_s = silence_s
        self._ctx = zmq.Context(io_threads=1)

        def make() -> zmq.Socket:
            return make_socket(self._ctx, zmq.DEALER, hwm=max(window, 1) + 16, client_curve=curve)

        self._conn = ClientSocket(make, endpoint, what=f"feed rank {rank} ({endpoint})", watch=curve is not None)
        self._endpoint = endpoint
        self._waker = Waker(self._ctx)
        self._queue: queue.Queue = queue.Queue()  # holds <= outstanding credits
        self._outstanding = 0  # credits granted to the current server session, not yet used (I/O thread)
        self._last_heard = float("-inf")
        self._hello_at: Optional[float] = None
        self._pending: collections.deque[bytes] = collections.deque()  # control messages not yet sent
        self.stats = FeedClientStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._io_loop, name=f"feed-client-{rank}", daemon=True)

    def __enter__(self) -> FeedClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[ReceivedBatch]:
        """Batches until the feed ends; each `next` waits at most 60 s."""
        while True:
            try:
                yield self.next(timeout_s=60.0)
            except FeedEnded:
                return

    def seconds_since_heard(self) -> float:
        """Seconds since the feeder last answered (inf before the first answer)."""
        return time.monotonic() - self._last_heard

    def request(self, n: int) -> None:
        """Grant the feeder `n` more batches (only needed with `window=0`)."""
        if n > 0:
            self._waker.send(control("credit", n=n))

    def ack(self, batch: ReceivedBatch | int) -> None:
        """Tell the feeder a batch was consumed."""
        seq = batch if isinstance(batch, int) else batch.seq
        self._waker.send(control("ack", seqs=[seq]))

    def next(self, timeout_s: float) -> ReceivedBatch:
        """The next batch, waiting at most `timeout_s`.

        Raises:
            TransportTimeout: no batch in time (says how long the feeder has been silent).
            FeedEnded: the feeder has no more batches for this rank.
        """
        t0 = time.monotonic()
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            self.stats.timeouts += 1
            raise TransportTimeout(
                f"feed rank {self.rank}: no batch from {self._endpoint} within {timeout_s}s "
                f"(feeder last heard {self.seconds_since_heard():.1f}s ago)") from None
        finally:
            self.stats.waits += 1
            self.stats.wait_seconds += time.monotonic() - t0
        if item is _END:
            self._queue.put(_END)
            raise FeedEnded(f"feed rank {self.rank}: the feeder has no more batches")
        if self.window:
            self.request(1)
        if self._auto_ack:
            self.ack(item)
        return item

    def close(self, timeout_s: float = 2.0) -> None:
        """Say bye (unacked batches go back to the feeder), stop the I/O thread, close."""
        if self._stop.is_set():
            return
        self._waker.send(control("bye"))
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        else:  # never started
            self._conn.close(0)
        self._waker.close()
        if self._thread.is_alive():  # cannot happen with non-blocking sends; never term under a live socket
            log.error("feed rank %d: I/O thread did not stop; leaking its context", self.rank)
            return
        self._ctx.term()

    # --- I/O thread -----------------------------------------------------------------------------------

    def _hello(self) -> None:
        self._hello_at = time.monotonic()  # until `welcome`, further resets are echoes of this one
        self._pending.append(control("hello", rank=self.rank))
        credit = self._outstanding or max(self.window - self._queue.qsize(), 0)
        self._outstanding = 0
        if credit:
            self._forward([control("credit", n=credit)])

    def _forward(self, datas: list[bytes]) -> None:
        """Queue the learner's control messages, coalescing credits and acks into one of each."""
        credit, seqs, others = 0, [], []
        for data in datas:
            msg = decode_control(data, inbound=True)
            if msg["op"] == "credit":
                credit += msg["n"]
            elif msg["op"] == "ack":
                seqs.extend(msg["seqs"])
            else:
                others.append(data)
        if seqs:
            self._pending.append(control("ack", seqs=seqs))
        if credit:
            self._outstanding += credit
            self._pending.append(control("credit", n=credit))
        self._pending.extend(others)  # bye goes last

    def _flush(self) -> None:
        """Send queued control messages without blocking (the feeder may be unreachable)."""
        while self._pending:
            try:
                self._conn.sock.send(self._pending[0], zmq.NOBLOCK)
            except zmq.Again:
                return
            self._pending.popleft()

    def _io_loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._conn.sock, zmq.POLLIN)
        poller.register(self._waker.receiver, zmq.POLLIN)
        self._conn.register(poller)
        self._hello()
        next_ping = time.monotonic() + self._hb
        socket_since = time.monotonic()
        try:
            while True:
                self._flush()
                events = dict(poller.poll(self._conn.timeout_ms(50)))
                self._forward(self._waker.drain())
                if self._stop.is_set():
                    self._flush()
                    return
                if self._conn.sock in events:
                    self._receive()
                if self._conn.service(poller):
                    self._reconnected()
                    socket_since = time.monotonic()
                elif self._silent_since(socket_since):
                    log.warning("feed rank %d: feeder %s silent for %.1fs; new socket", self.rank, self._endpoint,
                                min(self.seconds_since_heard(), time.monotonic() - socket_since))
                    self._conn.renew(poller)
                    self._reconnected()
                    socket_since = time.monotonic()
                if time.monotonic() >= next_ping:
                    try:
                        self._conn.sock.send(control("ping"), zmq.NOBLOCK)
                    except zmq.Again:  # nobody to ping; silence shows in seconds_since_heard
                        pass
                    next_ping = time.monotonic() + self._hb
        finally:
            self._conn.close(linger=200)  # the owner closes; linger lets the bye reach the feeder

    def _silent_since(self, socket_since: float) -> bool:
        """The feeder has answered nothing, not even a ping, for `silence_s` on a socket at least that old."""
        now = time.monotonic()
        return bool(self._silence_s) and now - max(self._last_heard, socket_since) >= self._silence_s

    def _reconnected(self) -> None:
        """Start over on a new socket as a new connection would: hello, then the credits not yet used.

        The old socket's queue is gone. Credits queued but unsent are already counted in
        `_outstanding`, which `_hello` grants again, so they are dropped here rather than
        granted twice; acks are kept (the feeder ignores seqs it does not hold). The feeder
        sees a new identity of this rank and drops the old one, handing its unacked and
        prefetched batches to `on_lost` (redelivered), as after any reconnect.
        """
        self.stats.reconnects += 1
        kept = [d for d in self._pending if decode_control(d, inbound=True)["op"] in ("ack", "bye")]
        self._pending.clear()
        self._hello()
        self._pending.extend(kept)

    def _receive(self) -> None:
        for _ in range(256):
            try:
                frames = self._conn.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                msg = decode_control(frames[0].buffer, inbound=False)
                batch = decode_batch(msg, frames[1:]) if msg["op"] == "batch" else None
            except MessageError as e:
                log.warning("feed rank %d: rejected a message: %s", self.rank, e)
                self.stats.rejected += 1
                continue
            self._last_heard = time.monotonic()
            if batch is not None:
                self._outstanding -= 1
                self.stats.batches += 1
                self.stats.bytes += batch.nbytes
                self._queue.put(batch)
            elif msg["op"] == "welcome":
                self._hello_at = None
            elif msg["op"] == "reset" and (self._hello_at is None or time.monotonic() - self._hello_at > 1.0):
                self.stats.resets += 1
                self._hello()
            elif msg["op"] == "end":
                self._queue.put(_END)
