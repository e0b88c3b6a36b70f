"""Following a learner's shared-memory write chunk by chunk (same host), for `WeightSubscriber`.

The publisher's `begin` notice names the segment a version is being written
into, and the publisher stamps each chunk there once it is written
(`weights_shm`). A follower copies and hashes chunk i as soon as it is stamped,
while the publisher writes the next ones, so the version is here about when the
publisher commits it, not a whole copy later. The digests are then compared with
the manifest's (which the subscriber asks for over ZeroMQ, as always); a follow
that cannot be trusted (the seqlock moved past the write's commit, a digest
differs, the write stalled or was abandoned) is dropped, silently, for the
subscriber's ordinary read or fetch, which rereads and judges the version itself.

This module only copies and compares: it holds no sockets and no buffers of its
own, so the subscriber keeps the one place where versions are accepted.

Call order (the subscriber's `wait_for_version`):

    begun = Begun.from_wire(msg, host=host, max_bytes=max_bytes)   # a `begin` notice; None: not ours to follow
    followed = follow_write(reader, begun, spare, deadline, patience_s=retry_s)
    if followed.outcome == "copied":
        m = ...                                                     # the manifest, over ZeroMQ
        if begun.made(m, followed.digests): ...                     # accept `followed.buf` as `m`
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional

import numpy as np
import torch

from afd_async.codec.msg import MessageError
from afd_async.transport.weights_layout import Manifest, chunk_hasher
from afd_async.transport.weights_shm import ShmLocation, ShmReader

__all__ = ["Begun", "Followed", "follow_slot", "follow_write"]

_FOLLOW_POLL_S = 1e-4  # between looks at a chunk stamp while following a write
_COPY_BLOCK = 2 << 20  # copy-then-hash block: fits the L2 of one core


@dataclass(frozen=True)
class Begun:
    """A `begin` notice: `version` is being written into the shared-memory segment at `loc`."""

    version: int
    total: int
    chunk_size: int
    chunk_hash: str
    loc: ShmLocation

    @property
    def n_chunks(self) -> int:
        return -(-self.total // self.chunk_size)

    @classmethod
    def from_wire(cls, msg: dict[str, Any], *, host: Optional[str], max_bytes: int) -> Optional[Begun]:
        """The notice in `msg` (whose int `version` the caller has checked), or None when it is not worth following:
        another host's (or an oversized) write, which the ordinary path fetches once served. `host` is this host's id,
        None when shared memory is off.

        Raises:
            MessageError: a field is missing or of the wrong type.
        """
        loc = ShmLocation.from_wire(msg.get("shm"))
        total, chunk, kind = msg.get("total"), msg.get("chunk_size"), msg.get("chunk_hash")
        if not (isinstance(total, int) and isinstance(chunk, int) and kind in ("sha256", "xxh3_128") and loc):
            raise MessageError("begin needs int total and chunk_size, a chunk_hash and a shm location")
        if host is None or loc.host != host or not 0 <= total <= max_bytes or chunk <= 0:
            return None
        return cls(msg["version"], total, chunk, kind, loc)

    def made(self, m: Manifest, digests: tuple[bytes, ...]) -> bool:
        """Whether the served manifest `m` is this write's version and `digests` (of what was copied) are its chunks.
        False: another version is served by now, or what was copied is not it."""
        return (m.version, m.total, m.chunk_size, m.chunk_hash) == (self.version, self.total, self.chunk_size,
                                                                    self.chunk_hash) and digests == m.chunk_digests


@dataclass(frozen=True)
class Followed:
    """What following one write gave.

    `copied`: the write committed `begun.version`; `buf` holds its bytes and `digests` each chunk's digest, computed
    as it was copied (not yet compared with any manifest). `torn`: a later write began in the segment, so what was
    copied may be part of it (the subscriber counts these). `dropped`: given up for any other reason (segment not
    usable, already committed, stalled, abandoned, out of time).
    """

    outcome: Literal["copied", "torn", "dropped"]
    buf: Optional[torch.Tensor] = None
    digests: tuple[bytes, ...] = ()


def follow_write(reader: ShmReader, begun: Begun, spare: Callable[[int], torch.Tensor], deadline: float, *,
                 patience_s: float) -> Followed:
    """Copy `begun`'s version out of `reader`'s segment while the publisher writes it, chunk by chunk.

    Args:
        reader: the open segment `begun.loc` names.
        begun: the write to follow.
        spare: gives the buffer (at least this many bytes) to copy into; called only once the write is seen in
            progress, so a follow given up at once costs no allocation.
        deadline: `time.monotonic()` by which to give up.
        patience_s: give up when the writer made no progress for this long (a publisher that died mid-write).
    """
    if reader.chunk_size != begun.chunk_size or reader.blob.size < begun.total:
        return Followed("dropped")
    seq, _ = reader.stamp()
    if seq % 2 == 0:
        return Followed("dropped")  # committed already (or not started): the ordinary read takes it whole
    buf = spare(begun.total)
    src, dst = reader.blob, buf.numpy()
    digests = []
    for i in range(begun.n_chunks):
        if not _until(lambda i=i: reader.chunk_stamp(i) == seq or reader.stamp()[0] != seq, deadline, patience_s):
            return Followed("dropped")
        if reader.chunk_stamp(i) != seq:
            return Followed("dropped")  # the write ended (abandoned or rewritten) before chunk i was stamped
        start, stop = i * begun.chunk_size, min((i + 1) * begun.chunk_size, begun.total)
        digests.append(_copy_hashed(src, dst, start, stop, begun.chunk_hash))
    if reader.stamp()[0] not in (seq, seq + 1):
        return Followed("torn")  # a later write began: what was copied may be part of it
    if not _until(lambda: reader.stamp()[0] != seq, deadline, patience_s) or reader.stamp()[1] != begun.version:
        return Followed("dropped")  # still not committed, or abandoned (refused NaN/Inf)
    return Followed("copied", buf, tuple(digests))


@contextlib.contextmanager
def follow_slot(directory: Path, limit: int) -> Iterator[bool]:
    """Hold one of `limit` follower slots of this host while the block runs; yields False when all are taken.

    Why: every follower copies and hashes while the publisher writes, so on a host with few cores many of them
    take the cores the writer needs (8 actors on 2 cores: the learner's 1 GB write went from 0.7 to 2.2 s). Past
    the bound an actor reads the committed version the ordinary way instead, after the write. A slot is an
    exclusive `flock` on a small file in the segment's directory, so a follower that dies frees its slot with
    its process.
    """
    fd = -1
    for k in range(limit):
        try:
            fd = os.open(directory / f"afd-follow-slot-{k}", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            break  # no slot files here (read-only directory): following is not bounded but not refused either
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            os.close(fd)
            fd = -1
    else:
        yield False
        return
    try:
        yield True
    finally:
        if fd >= 0:
            os.close(fd)  # releases the lock


def _until(ready: Callable[[], bool], deadline: float, patience_s: float) -> bool:
    """Poll shared memory until `ready()` (False at the deadline, or when the writer made no progress for
    `patience_s`: a publisher that died mid-write). Sleeps 100 µs between looks: a chunk takes about a
    millisecond to write, and spinning would take a core from the writer on a small machine."""
    give_up = min(deadline, time.monotonic() + patience_s)
    while not ready():
        if time.monotonic() >= give_up:
            return False
        time.sleep(_FOLLOW_POLL_S)
    return True


def _copy_hashed(src: np.ndarray, dst: np.ndarray, start: int, stop: int, kind: str) -> bytes:
    """Copy bytes `[start, stop)` of `src` to `dst`, hashing each block right after its copy while it is in cache
    (one pass over memory for both), and return the chunk's digest."""
    h = chunk_hasher(kind)  # type: ignore[arg-type]
    out = memoryview(dst)
    for lo in range(start, stop, _COPY_BLOCK):
        hi = min(lo + _COPY_BLOCK, stop)
        np.copyto(dst[lo:hi], src[lo:hi])
        h.update(out[lo:hi])
    return h.digest()
