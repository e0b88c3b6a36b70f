"""The feeder's end of the feed: a ROUTER that serves collated batches under credits.

A learner rank asks for batches with `credit n`; the server sends at most as
many batches as it was granted, so no queue in the path is unbounded: the
producer thread calls `next_batch(rank)` only while that rank's prefetched
batches are fewer than its credits (prefetch ≤ credit ≤ `max_credit`), and only
while its sent-but-unacked batches are fewer than `max_unacked`.

Every batch sent is either acked by the learner (`on_ack(rank, token)`) or,
when the learner leaves or misses heartbeats for `peer_timeout_s`, handed back
with the batches prefetched for it (`on_lost(rank, tokens)`), so the feeder can
un-ack them upstream (e.g. leave them pending in the Redis consumer group).
`on_lost` gets the tokens in the order the batches were produced, and a new
connection of that rank is served only after `on_lost` has returned, so a
feeder that queues them back gives a returning rank its batches first, in order,
however the departure and the new hello interleave. Callbacks run on the
server's I/O thread; keep them short.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import zmq

from afd_async.codec.msg import MessageError
from afd_async.transport._sockets import (CurveServerKeys, Waker, bind, make_socket, recv_ready, serve_loop,
                                          start_authenticator)
from afd_async.transport.feed_wire import Batch, control, decode_control, encode_batch

__all__ = ["FeedServer", "FeedServerStats"]

log = logging.getLogger(__name__)
NextBatch = Callable[[int], Optional[Batch]]


@dataclass
class _Peer:
    ident: bytes
    rank: int
    last_seen: float
    credit: int = 0
    ready: collections.deque = field(default_factory=collections.deque)  # (seq, frames, token)
    unacked: dict[int, Any] = field(default_factory=dict)  # seq -> token
    ended: bool = False
    end_sent: bool = False
    blocked_until: float = 0.0

    def tokens(self) -> list[Any]:
        """Every batch it holds, sent-unacked or prefetched, in the order they were produced (seq)."""
        held = [(seq, t) for seq, _, t in self.ready] + list(self.unacked.items())
        return [t for _, t in sorted(held, key=lambda st: st[0])]


@dataclass
class FeedServerStats:
    """Counters and gauges of one feed (exported as `afd_feeder_*` by the role)."""

    batches_sent: int = 0
    bytes_sent: int = 0
    acked: int = 0
    lost: int = 0
    rejected: int = 0  # foreign bytes, unknown schema/op, bad fields
    resets: int = 0  # messages from peers that never said hello
    producer_errors: int = 0
    callback_errors: int = 0
    producer_seconds: float = 0.0  # time inside next_batch (collation)
    credits: dict[int, int] = field(default_factory=dict)  # rank -> granted, unsent
    queued: dict[int, int] = field(default_factory=dict)  # rank -> prefetched, unsent
    unacked: dict[int, int] = field(default_factory=dict)  # rank -> sent, not acked


class FeedServer:
    """Serves batches from `next_batch(rank)` to learner ranks (`FeedClient`s) over ZeroMQ.

    Call order:

        with FeedServer("tcp://0.0.0.0:5555", next_batch, on_ack=ack, on_lost=unack) as server:
            while feeding:                   # the producer and I/O threads do the work
                export(server.stats())
        # on exit every unacked or prefetched batch goes to on_lost

    Args:
        endpoint: where to bind (`tcp://127.0.0.1:0` picks a free port; see `endpoint`).
        next_batch: called on the producer thread; returns a `Batch`, None when none is
            ready yet (retried after `idle_s`), or raises `StopIteration` to end that rank.
        on_ack: `(rank, token)` once a learner acked a batch.
        on_lost: `(rank, tokens)` for batches a departed learner never acked.
        max_credit: most credits a rank may hold (excess is clamped).
        max_unacked: most sent-but-unacked batches per rank before production pauses.
        peer_timeout_s: silence after which a learner counts as dead.
        idle_s: wait after `next_batch` returned None for every rank.
        curve: CURVE server keys; None for plain TCP.
    """

    def __init__(self, endpoint: str, next_batch: NextBatch, *, on_ack: Optional[Callable[[int, Any], None]] = None,
                 on_lost: Optional[Callable[[int, list[Any]], None]] = None, max_credit: int = 8,
                 max_unacked: int = 64, peer_timeout_s: float = 10.0, idle_s: float = 0.01,
                 curve: Optional[CurveServerKeys] = None) -> None:
        if max_credit < 1 or max_unacked < 1 or peer_timeout_s <= 0 or idle_s <= 0:
            raise ValueError("max_credit, max_unacked, peer_timeout_s and idle_s must be positive")
        self._next_batch, self._on_ack, self._on_lost = next_batch, on_ack, on_lost
        self._max_credit, self._max_unacked = max_credit, max_unacked
        self._timeout, self._idle = peer_timeout_s, idle_s
        self._ctx = zmq.Context(io_threads=1)
        self._auth = start_authenticator(self._ctx, curve) if curve else None
        self._sock = make_socket(self._ctx, zmq.ROUTER, hwm=max_credit + 16, server_curve=curve)
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.endpoint = bind(self._sock, endpoint)
        self._waker = Waker(self._ctx)
        self._cond = threading.Condition()
        self._peers: dict[bytes, _Peer] = {}
        # Seqs start at a random point per server: after a feeder restart a learner still acks (late) the old
        # session's seqs, which must not match the new session's batches (that would ack a group nobody trained).
        self._seq = random.SystemRandom().getrandbits(40) << 12
        self._rr = 0
        self._callbacks: collections.deque = collections.deque()
        # rank -> "lost" callbacks queued and not yet run: a rank's replacement is served only once its
        # predecessor's batches are back with the feeder, so it gets them first, in their order.
        self._lost_pending: collections.Counter[int] = collections.Counter()
        self._stats = FeedServerStats()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._io_loop, name="feed-io", daemon=True),
                         threading.Thread(target=self._produce_loop, name="feed-producer", daemon=True)]

    def __enter__(self) -> FeedServer:
        for t in self._threads:
            t.start()
        return self

    def start(self) -> FeedServer:
        """Start the producer and I/O threads (what `with` does)."""
        return self.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> FeedServerStats:
        """A snapshot of the counters and per-rank gauges."""
        with self._cond:
            s = FeedServerStats(**{k: v for k, v in vars(self._stats).items() if not isinstance(v, dict)})
            for p in self._peers.values():
                s.credits[p.rank], s.queued[p.rank], s.unacked[p.rank] = p.credit, len(p.ready), len(p.unacked)
            return s

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop both threads, hand every outstanding batch to `on_lost`, close the sockets."""
        if self._stop.is_set():
            return
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout_s)
        with self._cond:
            for p in list(self._peers.values()):
                self._drop(p, "server closing")
        self._run_callbacks()
        if any(t.is_alive() for t in self._threads):
            log.error("feed server: a thread did not stop (blocked in next_batch?); leaking its context")
            return
        self._waker.close()
        self._sock.close(0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    # --- producer thread ------------------------------------------------------------------------------

    def _eligible(self) -> list[_Peer]:
        peers = [p for p in self._peers.values() if not p.ended and len(p.ready) < p.credit
                 and len(p.ready) + len(p.unacked) < self._max_unacked and not self._lost_pending[p.rank]]
        if not peers:
            return []
        self._rr = (self._rr + 1) % len(peers)
        return peers[self._rr:] + peers[: self._rr]

    def _produce_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                peers = self._eligible()
                if not peers:
                    self._cond.wait(0.1)
                    continue
            produced = False
            for peer in peers:
                if self._stop.is_set():
                    return
                produced |= self._produce_one(peer)
            if not produced:
                with self._cond:
                    self._cond.wait(self._idle)

    def _produce_one(self, peer: _Peer) -> bool:
        t0 = time.perf_counter()
        batch: Optional[Batch] = None
        try:
            batch = self._next_batch(peer.rank)
            if batch is not None:
                with self._cond:
                    self._seq += 1
                    seq = self._seq
                frames = encode_batch(seq, batch)  # collation + encoding stay off the I/O thread
        except StopIteration:
            with self._cond:
                peer.ended = True
            self._waker.send()
            return False
        except Exception:  # noqa: BLE001 - a failing collator must not kill the feed
            log.exception("next_batch(%d) failed", peer.rank)
            with self._cond:
                self._stats.producer_errors += 1
                if batch is not None:  # collated but not encodable: give it back
                    self._stats.lost += 1
                    self._queue_lost(peer.rank, [batch.token])
            return False
        finally:
            with self._cond:
                self._stats.producer_seconds += time.perf_counter() - t0
        if batch is None:
            return False
        with self._cond:
            if self._peers.get(peer.ident) is peer:
                peer.ready.append((seq, frames, batch.token))
            else:  # the peer left while we collated
                self._stats.lost += 1
                self._queue_lost(peer.rank, [batch.token])
        self._waker.send()
        return True

    # --- I/O thread -----------------------------------------------------------------------------------

    def _io_loop(self) -> None:
        serve_loop(self._sock, self._waker, self._stop, self._turn)

    def _turn(self, readable: bool) -> None:
        if readable:
            self._receive()
        self._send_ready()
        self._expire()
        self._run_callbacks()

    def _reply(self, ident: bytes, data: bytes) -> None:
        try:
            self._sock.send_multipart([ident, data], zmq.NOBLOCK)
        except zmq.ZMQError:  # peer gone or full: heartbeats sort it out
            pass

    def _receive(self) -> None:
        for frames in recv_ready(self._sock, 1024):
            ident = frames[0]
            try:
                if len(frames) != 2:
                    raise MessageError(f"expected 1 payload frame, got {len(frames) - 1}")
                msg = decode_control(frames[1], inbound=True)
            except MessageError as e:
                log.warning("feed: rejected a message: %s", e)
                with self._cond:
                    self._stats.rejected += 1
                continue
            self._handle(ident, msg)

    def _handle(self, ident: bytes, msg: dict[str, Any]) -> None:
        op, now = msg["op"], time.monotonic()
        with self._cond:
            peer = self._peers.get(ident)
            if op == "hello":
                if peer is not None:
                    self._drop(peer, "said hello again")
                for other in [p for p in self._peers.values() if p.rank == msg["rank"]]:
                    self._drop(other, "replaced by a new connection of its rank")
                self._peers[ident] = _Peer(ident, msg["rank"], now)
                self._reply(ident, control("welcome", rank=msg["rank"]))
                return
            if peer is None:
                self._stats.resets += 1
                self._reply(ident, control("reset", reason="unknown peer: say hello"))
                return
            peer.last_seen = now
            if op == "credit":
                peer.credit = min(peer.credit + msg["n"], self._max_credit)
                self._cond.notify_all()
            elif op == "ack":
                for seq in msg["seqs"]:
                    if seq in peer.unacked:
                        self._stats.acked += 1
                        self._callbacks.append(("ack", peer.rank, peer.unacked.pop(seq)))
                self._cond.notify_all()
            elif op == "ping":
                self._reply(ident, control("pong"))
            elif op == "bye":
                self._drop(peer, "said bye")

    def _drop(self, peer: _Peer, why: str) -> None:
        """Forget `peer` (lock held); its prefetched and unacked batches become lost."""
        self._peers.pop(peer.ident, None)
        tokens = peer.tokens()
        peer.ready.clear()
        peer.unacked.clear()
        log.info("feed: rank %d dropped (%s); %d batches lost", peer.rank, why, len(tokens))
        if tokens:
            self._stats.lost += len(tokens)
            self._queue_lost(peer.rank, tokens)

    def _queue_lost(self, rank: int, tokens: list[Any]) -> None:
        """(lock held) Hand `tokens` to `on_lost` on the I/O thread; `rank` is not served until then."""
        self._lost_pending[rank] += 1
        self._callbacks.append(("lost", rank, tokens))

    def _send_ready(self) -> None:
        now = time.monotonic()
        with self._cond:
            peers = list(self._peers.values())
        for peer in peers:
            while True:
                with self._cond:
                    if peer.blocked_until > now or self._peers.get(peer.ident) is not peer:
                        break
                    if peer.ended and not peer.ready and not peer.end_sent:
                        peer.end_sent = True
                        self._reply(peer.ident, control("end"))
                    if not peer.ready or peer.credit <= 0:
                        break
                    seq, frames, token = peer.ready.popleft()
                    peer.credit -= 1
                    peer.unacked[seq] = token
                try:
                    self._sock.send_multipart([peer.ident, *frames], zmq.NOBLOCK, copy=False)
                except zmq.ZMQError:  # HWM reached or peer unreachable: retry shortly
                    with self._cond:
                        peer.unacked.pop(seq, None)
                        peer.ready.appendleft((seq, frames, token))
                        peer.credit += 1
                        peer.blocked_until = now + 0.02
                    break
                with self._cond:
                    self._stats.batches_sent += 1
                    self._stats.bytes_sent += sum(memoryview(f).nbytes for f in frames[1:])
                    self._cond.notify_all()

    def _expire(self) -> None:
        now = time.monotonic()
        with self._cond:
            for peer in [p for p in self._peers.values() if now - p.last_seen > self._timeout]:
                self._drop(peer, f"silent for {now - peer.last_seen:.1f}s > {self._timeout}s")

    def _run_callbacks(self) -> None:
        while self._callbacks:
            what, rank, arg = self._callbacks.popleft()
            fn = self._on_ack if what == "ack" else self._on_lost
            try:
                if fn is not None:
                    fn(rank, arg)
            except Exception:  # noqa: BLE001 - a failing hook must not kill the feed
                log.exception("feed %s callback failed", what)
                self._stats.callback_errors += 1
            finally:
                if what == "lost":
                    with self._cond:
                        self._lost_pending[rank] -= 1
                        self._cond.notify_all()
