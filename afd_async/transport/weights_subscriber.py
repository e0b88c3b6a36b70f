"""The actor's end of weight sync: learn of versions, fetch, verify, hand over.

Announcements arrive on a SUB socket, but they are only hints: the subscriber
asks the publisher's ROUTER for the latest manifest (so a late joiner, or one
whose SUB missed a message, still gets the newest version) and pulls its chunks
over a DEALER, at most `window` chunks in flight and one version at a time,
straight into a reused buffer (`recv_into`). Each chunk's digest and finiteness
are checked (on a helper thread) as it lands, then the manifest's `sha256` and
version monotonicity; any failure raises `WeightsRejected` and the last good
version stays in place.

Same host (`shm`, default on): when the manifest reply names a shared-memory
segment of a publisher on this host (`weights_shm`), the chunks are copied out
of it instead, one copy each, checked the same way while the next is copied. A
read that overlapped the publisher reusing the segment (its seqlock moved) is
counted in `stats.torn` and the version is fetched over ZeroMQ instead; a digest
mismatch on a stable segment is a `hash` rejection, as over the network.

Following a write (same host, inside `wait_for_version`): on the publisher's
`begin` notice the subscriber copies and hashes each chunk as soon as it is
written (`weights_follow`), then asks for the manifest over ZeroMQ, as always,
and accepts the version only if the digests match; a follow that cannot be
trusted is dropped, silently, for the ordinary path above, which rereads and
judges the version itself.

Buffers: two, reused. The tensors of an update are views into one of them and
stay valid until the update after next is accepted; load them into the model
(`load_state_dict` copies) between rollouts.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import zmq

from afd_async.codec.msg import DTYPES, MessageError
from afd_async.transport._handshake import ClientSocket
from afd_async.transport._sockets import CurveClientKeys, make_socket
from afd_async.transport.errors import TransportTimeout, WeightsRejected
from afd_async.transport.weights_follow import Begun, follow_slot, follow_write
from afd_async.transport.weights_layout import Manifest, Scope, chunk_hasher, chunk_nonfinite, decode_wmsg, wmsg
from afd_async.transport.weights_shm import ShmLocation, ShmReader, host_id

__all__ = ["WeightSubscriber", "WeightSubscriberStats", "WeightsUpdate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsUpdate:
    """A verified weight version; `state_dict` tensors are views into the subscriber's buffer."""

    version: int
    sha256: str
    scope: Scope
    state_dict: dict[str, torch.Tensor]
    nbytes: int
    seconds: float  # fetch + verify time


@dataclass
class WeightSubscriberStats:
    """Counters of one subscriber (exported as `afd_weight_sync_*` with direction=receive)."""

    updates: int = 0
    bytes: int = 0
    fetch_seconds: float = 0.0
    rejected: dict[str, int] | None = None  # reason -> count (hash, nonfinite, stale, layout, gone, schema)
    waits: int = 0
    wait_seconds: float = 0.0
    timeouts: int = 0
    reconnects: int = 0  # sockets made anew after a failed CURVE handshake (e.g. a plain-TCP impostor)
    shm_reads: int = 0  # versions copied out of the publisher's shared memory (same host)
    shm_follows: int = 0  # of those, copied chunk by chunk while the publisher wrote them (`begin` notices)
    follows_skipped: int = 0  # writes not followed because the host's follower slots were all taken
    torn: int = 0  # shared-memory reads that overlapped a rewrite of the segment (then fetched over ZeroMQ)

    def reject(self, reason: str) -> None:
        self.rejected = self.rejected or {}
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


class WeightSubscriber:
    """Receives weight versions from a `WeightPublisher`.

    Call order:

        with WeightSubscriber(notify_endpoint, fetch_endpoint) as sub:
            model.load_state_dict(sub.wait_for_version(0, timeout_s=120).state_dict)
            while acting:
                rollout(model)                            # with sub.version
                update = sub.poll_update(timeout_s=60)    # between rollouts; None if nothing new
                if update is not None:
                    model.load_state_dict(update.state_dict)

    Args:
        notify_endpoint: the publisher's PUB endpoint.
        fetch_endpoint: the publisher's ROUTER endpoint.
        window: chunk requests in flight (memory ≈ window × chunk size in ZeroMQ).
        query_interval_s: ask for the latest version at least this often while
            waiting, in case an announcement was missed.
        retry_s: re-request chunks after this long without a reply.
        max_bytes: largest version accepted (guards the buffer allocation).
        curve: CURVE client keys for both sockets; None for plain TCP. A CURVE socket
            whose handshake fails (libzmq then gives up on it) is made anew after a bounded
            backoff, checked whenever this subscriber polls (`_handshake.ClientSocket`);
            requests in flight on the old socket are sent again on the new one.
        shm: read versions out of the publisher's shared memory when it is on this host
            (auto-detected by host id and segment token); False: always over ZeroMQ.
    """

    def __init__(self, notify_endpoint: str, fetch_endpoint: str, *, window: int = 4, query_interval_s: float = 1.0,
                 retry_s: float = 2.0, max_bytes: int = 64 << 30, curve: Optional[CurveClientKeys] = None,
                 shm: bool = True, max_followers: Optional[int] = None) -> None:
        if window < 1 or query_interval_s <= 0 or retry_s <= 0:
            raise ValueError("window must be >= 1; query_interval_s and retry_s > 0")
        if max_followers is not None and max_followers < 0:
            raise ValueError(f"max_followers must be >= 0 or None (half the host's cores), got {max_followers}")
        # subscribers of this host that follow a write at once (`follow_slot`); the rest read after the commit
        self._max_followers = max(1, (os.cpu_count() or 2) // 2) if max_followers is None else max_followers
        self._window, self._query_s, self._retry_s, self._max_bytes = window, query_interval_s, retry_s, max_bytes
        self._ctx = zmq.Context(io_threads=1)

        def make_sub() -> zmq.Socket:
            sock = make_socket(self._ctx, zmq.SUB, hwm=64, client_curve=curve)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            return sock

        def make_dealer() -> zmq.Socket:
            return make_socket(self._ctx, zmq.DEALER, hwm=window + 16, client_curve=curve)

        watch = curve is not None
        self._conns = (ClientSocket(make_sub, notify_endpoint, what=f"weights announcements ({notify_endpoint})",
                                    watch=watch),
                       ClientSocket(make_dealer, fetch_endpoint, what=f"weights fetch ({fetch_endpoint})", watch=watch))
        self._generation = 0  # bumps when the DEALER is made anew: requests in flight are lost
        self._hasher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="weights-verify")
        self._host = host_id() if shm else None
        self._readers: dict[str, ShmReader] = {}  # open segments by path (a publisher has a few, reused)
        self._unreadable: set[str] = set()  # segments that did not open: fetched over ZeroMQ without trying again
        self._rids = itertools.count(1)
        self._current_buf: Optional[torch.Tensor] = None  # holds self.current's tensors
        self._spare_buf: Optional[torch.Tensor] = None  # the next fetch lands here
        self.current: Optional[WeightsUpdate] = None
        self.announced = -1
        self._begun: Optional[Begun] = None  # the newest write in progress on this host (`begin` notice)
        self._last_heard = float("-inf")
        self.stats = WeightSubscriberStats()

    @property
    def _sub(self) -> zmq.Socket:
        return self._conns[0].sock

    @property
    def _dealer(self) -> zmq.Socket:
        return self._conns[1].sock

    @property
    def version(self) -> int:
        """Version of the last good weights (-1 before the first)."""
        return self.current.version if self.current is not None else -1

    def __enter__(self) -> WeightSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._hasher.shutdown(wait=True)
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        for conn in self._conns:
            conn.close(0)
        self._ctx.term()

    def poll_announcements(self) -> int:
        """Read pending announcements without blocking; returns the newest version announced."""
        self._service()
        while True:
            try:
                data = self._sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return self.announced
            try:
                msg = decode_wmsg(data, frozenset({"announce", "begin"}))
                if not isinstance(msg.get("version"), int):
                    raise MessageError(f"{msg['op']} needs an int version")
                if msg["op"] == "begin":
                    self._note_begin(msg)
                    continue
            except MessageError as e:
                log.warning("weights subscriber: rejected an announcement: %s", e)
                self.stats.reject("schema")
                continue
            self.announced = max(self.announced, msg["version"])

    def poll_update(self, timeout_s: float) -> Optional[WeightsUpdate]:
        """Fetch the latest version if one newer than ours was announced, else None at once."""
        if self.poll_announcements() <= self.version:
            return None
        return self.fetch_latest(timeout_s)

    def refresh(self, max_lag: int, timeout_s: float) -> WeightsUpdate:
        """Make sure our version is at most `max_lag` behind the newest announced (k_D for D)."""
        latest = max(self.poll_announcements(), self.version)
        if self.current is not None and latest - self.version <= max_lag:
            return self.current
        return self.wait_for_version(max(latest - max_lag, 0), timeout_s)

    def wait_for_version(self, min_version: int, timeout_s: float) -> WeightsUpdate:
        """Block until we hold a version >= `min_version`; returns the current update.

        Raises:
            TransportTimeout: not reached in `timeout_s` (says what we have and last heard).
        """
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        next_query = t0
        try:
            while self.current is None or self.version < min_version:
                now = time.monotonic()
                if now >= deadline:
                    self.stats.timeouts += 1
                    raise TransportTimeout(
                        f"no weights version >= {min_version} within {timeout_s}s: holding {self.version}, "
                        f"newest announced {self.announced}, publisher last answered "
                        f"{now - self._last_heard:.1f}s ago")
                announced = self.poll_announcements()
                begun, self._begun = self._begun, None
                if begun is not None and begun.version > self.version:
                    try:
                        self._follow(begun, deadline)
                    except WeightsRejected as e:
                        self.stats.reject(e.reason)
                        log.warning("%s", e)
                    except TransportTimeout:
                        continue  # the deadline: the loop says so
                    if self.version >= min_version:
                        break
                    announced = self.poll_announcements()
                if announced > self.version or now >= next_query:
                    next_query = now + self._query_s
                    try:
                        self.fetch_latest(max(deadline - now, 1e-3))
                    except WeightsRejected as e:
                        log.warning("%s", e)
                    except TransportTimeout:
                        continue
                    if self.version >= min_version:
                        break
                self._poll(self._sub, max(1, int(1000 * min(deadline - time.monotonic(),
                                                            next_query - time.monotonic()))))
        finally:
            self.stats.waits += 1
            self.stats.wait_seconds += time.monotonic() - t0
        assert self.current is not None
        return self.current

    def fetch_latest(self, timeout_s: float) -> Optional[WeightsUpdate]:
        """Fetch, verify and accept the publisher's latest version; None when it is ours or none exists.

        Raises:
            WeightsRejected: hash mismatch, NaN/Inf, an older version than ours, a bad
                layout, or the version dropped mid-fetch; the last good weights stay.
            TransportTimeout: the publisher did not answer in time.
        """
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        rid = next(self._rids)
        msg, _ = self._request(wmsg("latest", rid=rid), rid, deadline, frozenset({"manifest", "none"}))
        if msg["op"] == "none":
            return None
        try:
            m = Manifest.from_wire(msg.get("manifest"), max_bytes=self._max_bytes)
            if m.version < self.version:
                raise WeightsRejected("stale", m.version, f"older than the version held ({self.version})")
            if m.version == self.version:
                return None
            buf = self._spare(m.total)
            loc = ShmLocation.from_wire(msg.get("shm")) if self._host is not None else None
            if loc is None or loc.host != self._host or not self._read_shm(m, buf, loc):
                self._fetch_chunks(m, buf, deadline)
            update = self._verify(m, buf, time.monotonic() - t0)
        except WeightsRejected as e:
            self.stats.reject(e.reason)
            raise
        return self._accept(update, buf)

    def _accept(self, update: WeightsUpdate, buf: torch.Tensor) -> WeightsUpdate:
        """`update` (views into `buf`, verified) becomes the current version; the old buffer becomes the spare."""
        self._current_buf, self._spare_buf = buf, self._current_buf
        self.current = update
        self.announced = max(self.announced, update.version)
        self.stats.updates += 1
        self.stats.bytes += update.nbytes
        self.stats.fetch_seconds += update.seconds
        return update

    # --- internals ------------------------------------------------------------------------------------

    def _service(self) -> None:
        """Make a socket anew if its handshake failed and its backoff is over (see `ClientSocket`)."""
        for conn in self._conns:
            if conn.service():
                self.stats.reconnects += 1
                if conn is self._conns[1]:
                    self._generation += 1

    def _poll(self, sock: zmq.Socket, timeout_ms: int) -> bool:
        """Wait up to `timeout_ms` for `sock` to be readable; a handshake failure or a due recreation
        ends the wait early. False when it timed out or `sock` was replaced meanwhile."""
        if all(conn.monitor is None for conn in self._conns):  # plain TCP: nothing to watch
            return bool(sock.poll(timeout_ms, zmq.POLLIN))
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        for conn in self._conns:
            conn.register(poller)
            timeout_ms = conn.timeout_ms(timeout_ms)
        ready = sock in dict(poller.poll(timeout_ms))
        self._service()
        return ready and any(sock is conn.sock for conn in self._conns)

    def _spare(self, total: int) -> torch.Tensor:
        """The buffer not holding the current version, grown if needed."""
        if self._spare_buf is None or self._spare_buf.numel() < total:
            self._spare_buf = torch.empty(max(total, 1), dtype=torch.uint8)
        return self._spare_buf

    def _recv(self, rid: int, ops: frozenset[str]) -> Optional[dict[str, Any]]:
        """One reply head matching `rid`, or None (foreign/stale; its frames are discarded)."""
        try:
            msg = decode_wmsg(self._dealer.recv(), ops | {"gone"})
            ok = msg.get("rid") == rid
        except MessageError as e:
            log.warning("weights subscriber: rejected a reply: %s", e)
            self.stats.reject("schema")
            ok, msg = False, {}
        if ok:
            self._last_heard = time.monotonic()
            return msg
        while self._dealer.getsockopt(zmq.RCVMORE):
            self._dealer.recv()
        return None

    def _drain(self) -> None:
        """Discard the rest of the multipart message being read."""
        while self._dealer.getsockopt(zmq.RCVMORE):
            self._dealer.recv()

    def _send(self, data: bytes) -> bool:
        """Send without blocking; False when the publisher is unreachable (HWM full): retry later."""
        try:
            self._dealer.send(data, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _request(self, data: bytes, rid: int, deadline: float, ops: frozenset[str]) -> tuple[dict[str, Any], float]:
        self._service()
        self._send(data)
        resend, generation = time.monotonic() + self._retry_s, self._generation
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TransportTimeout(f"weights publisher did not answer within the deadline "
                                       f"(last answered {now - self._last_heard:.1f}s ago)")
            if now >= resend or generation != self._generation:  # a new socket: the request went with the old
                self._send(data)
                resend, generation = now + self._retry_s, self._generation
            if self._poll(self._dealer, max(1, int(1000 * min(deadline, resend) - 1000 * now))):
                msg = self._recv(rid, ops)
                if msg is not None:
                    return msg, now

    def _fetch_chunks(self, m: Manifest, buf: torch.Tensor, deadline: float) -> None:
        mv = memoryview(buf.numpy())
        rid = next(self._rids)
        todo = list(range(m.n_chunks))[::-1]
        inflight: dict[int, float] = {}
        checks: list[tuple[int, concurrent.futures.Future]] = []
        generation = self._generation
        while todo or inflight:
            now = time.monotonic()
            if generation != self._generation:  # a new socket: requests in flight went with the old one
                todo.extend(inflight)
                inflight.clear()
                generation = self._generation
            for idx in [i for i, t in inflight.items() if now - t > self._retry_s]:
                inflight.pop(idx)
                todo.append(idx)
            while todo and len(inflight) < self._window:
                idx = todo[-1]
                if not self._send(wmsg("chunk", rid=rid, version=m.version, index=idx)):
                    break
                inflight[todo.pop()] = now
            if now >= deadline:
                raise TransportTimeout(f"weights version {m.version}: {len(todo) + len(inflight)} of "
                                       f"{m.n_chunks} chunks missing at the deadline")
            if not self._poll(self._dealer, max(1, int(1000 * min(deadline - now, self._retry_s)))):
                continue
            msg = self._recv(rid, frozenset({"chunk"}))
            if msg is None:
                continue
            if msg["op"] == "gone":
                raise WeightsRejected("gone", m.version, f"publisher moved on to {msg.get('latest')}")
            idx, sizes = msg.get("index"), msg.get("sizes")
            if not isinstance(idx, int) or idx not in inflight:  # duplicate after a retry (or a non-int index)
                self._drain()
                continue
            start, stop = m.chunk_span(idx)
            if not isinstance(sizes, list) or not all(isinstance(n, int) and n >= 0 for n in sizes) \
                    or sum(sizes) != stop - start:
                self._drain()  # a refused reply's frames must not be read as the next reply
                raise WeightsRejected("layout", m.version, f"chunk {idx} sizes {sizes} != {stop - start} bytes")
            off = start
            for size in sizes:
                if not self._dealer.getsockopt(zmq.RCVMORE) or self._dealer.recv_into(mv[off : off + size]) != size:
                    self._drain()
                    raise WeightsRejected("layout", m.version, f"chunk {idx}: frames disagree with sizes {sizes}")
                off += size
            if self._dealer.getsockopt(zmq.RCVMORE):
                self._drain()
                raise WeightsRejected("layout", m.version, f"chunk {idx}: more frames than sizes")
            del inflight[idx]
            checks.append(self._hasher.submit(_check_chunk, m, buf, idx))
        _raise_first(checks)

    def _reader(self, loc: ShmLocation, *, remember_failure: bool = True) -> Optional[ShmReader]:
        """The open segment at `loc` (opened now if new), or None when it is gone or not the announced one.

        `remember_failure`: a segment that does not open is not tried again (manifest replies); off for `begin`
        notices, which a plain-TCP peer could forge to make a real segment look unreadable."""
        reader = self._readers.get(loc.path)
        if reader is not None and reader.location.token == loc.token:
            return reader
        if reader is not None:
            reader.close()
            del self._readers[loc.path]
        if loc.path in self._unreadable:
            return None
        try:
            reader = ShmReader(loc)
        except OSError as e:  # e.g. a container with its own /dev/shm: logged once per segment
            if remember_failure:
                log.info("weights subscriber: shared memory not readable (%s); fetching over ZeroMQ", e)
                self._unreadable.add(loc.path)
            return None
        if len(self._readers) >= 8:  # segments of a restarted publisher: drop the oldest
            self._readers.pop(next(iter(self._readers))).close()
        self._readers[loc.path] = reader
        return reader

    def _read_shm(self, m: Manifest, buf: torch.Tensor, loc: ShmLocation) -> bool:
        """Copy version `m` out of shared memory into `buf`, verifying each chunk while the next is copied.

        Returns False when the segment is unusable or the read was torn (fetch over ZeroMQ instead).

        Raises:
            WeightsRejected: a chunk digest or finiteness check failed although the segment was stable.
        """
        reader = self._reader(loc)
        if reader is None or reader.blob.size < m.total:
            return False
        seq, version = reader.stamp()
        if seq % 2 or version != m.version:
            self.stats.torn += 1
            return False
        src, dst = reader.blob, buf.numpy()
        checks = []
        for idx in range(m.n_chunks):
            start, stop = m.chunk_span(idx)
            np.copyto(dst[start:stop], src[start:stop])
            checks.append(self._hasher.submit(_check_chunk, m, buf, idx))
        concurrent.futures.wait(checks)
        if reader.stamp() != (seq, version):
            self.stats.torn += 1
            return False
        _raise_first(checks)
        self.stats.shm_reads += 1
        return True

    def _note_begin(self, msg: dict[str, Any]) -> None:
        """Keep a `begin` notice worth following: a newer version, written on this host, of a size we accept."""
        begun = Begun.from_wire(msg, host=self._host, max_bytes=self._max_bytes)
        if begun is not None and begun.version > max(self.version, self._begun.version if self._begun else -1):
            self._begun = begun

    def _follow(self, begun: Begun, deadline: float) -> Optional[WeightsUpdate]:
        """Copy `begun`'s version out of shared memory while the publisher writes it (`weights_follow`); accept it
        once its manifest agrees. None when the follow is given up (the caller then takes the ordinary path).

        Raises:
            WeightsRejected: the version is served with NaN/Inf (its digests matched what was copied).
        """
        t0 = time.monotonic()
        reader = self._reader(begun.loc, remember_failure=False)
        if reader is None:
            return None
        with follow_slot(Path(begun.loc.path).parent, self._max_followers) as slot:
            if not slot:
                self.stats.follows_skipped += 1
                return None
            followed = follow_write(reader, begun, self._spare, deadline, patience_s=self._retry_s)
        if followed.outcome == "torn":
            self.stats.torn += 1
        if followed.outcome != "copied" or followed.buf is None:
            return None
        buf = followed.buf
        rid = next(self._rids)
        msg, _ = self._request(wmsg("latest", rid=rid), rid, deadline, frozenset({"manifest", "none"}))
        if msg["op"] != "manifest":
            return None
        m = Manifest.from_wire(msg.get("manifest"), max_bytes=self._max_bytes)
        if not begun.made(m, followed.digests):
            return None  # another version is served by now, or what was copied is not it: read it the ordinary way
        if not m.finite:
            _raise_first([self._hasher.submit(_check_chunk, m, buf, i) for i in range(begun.n_chunks)])
        update = self._verify(m, buf, time.monotonic() - t0)
        self.stats.shm_reads += 1
        self.stats.shm_follows += 1
        return self._accept(update, buf)

    def _verify(self, m: Manifest, buf: torch.Tensor, seconds: float) -> WeightsUpdate:
        sd = {e.name: buf[e.offset : e.offset + e.nbytes].view(DTYPES[e.dtype][0]).view(e.shape) for e in m.entries}
        if m.version <= self.version:
            raise WeightsRejected("stale", m.version, f"not newer than the version held ({self.version})")
        return WeightsUpdate(m.version, m.sha256, m.scope, sd, m.total, seconds)


def _check_chunk(m: Manifest, buf: torch.Tensor, idx: int) -> Optional[WeightsRejected]:
    """Chunk `idx` of `buf` against its digest, then (unless the manifest is marked `finite`) its floats for NaN/Inf,
    while it is still in cache."""
    start, stop = m.chunk_span(idx)
    h = chunk_hasher(m.chunk_hash)
    h.update(memoryview(buf.numpy())[start:stop])
    if h.digest() != m.chunk_digests[idx]:
        return WeightsRejected("hash", m.version, f"chunk {idx} {m.chunk_hash} mismatch")
    if m.finite:
        return None  # the publisher checked these very bytes (the digest says so)
    bad = chunk_nonfinite(buf, m.entries, m.entry_starts, start, stop)
    return None if bad is None else WeightsRejected("nonfinite", m.version, f"{bad} holds NaN/Inf")


def _raise_first(checks: list[concurrent.futures.Future]) -> None:
    """Raise the first failed chunk check, in chunk order."""
    for fut in checks:
        err = fut.result()
        if err is not None:
            raise err
