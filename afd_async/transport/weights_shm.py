"""Same-host weight sync through shared memory: one segment per publisher arena, guarded by a seqlock.

Over loopback ZeroMQ a version is copied four times (arena → socket → kernel → socket → buffer);
an actor on the learner's host can instead copy it once, straight out of the arena, when the
arena is a shared-memory file. Each segment is a file under `/dev/shm` (`shm_dir`):

    [0, 64)              header: magic | seq (u64) | version (i64) | token (16 bytes) | chunk_size (u64) |
                         slots (u64) | data offset (u64) | zero padding
    [64, 64 + 8·slots)   per-chunk stamps (u64): the `seq` of the write that last completed chunk i
    [data, data + n)     the version's blob, in the canonical layout of `weights_layout` (data: page aligned)

Concurrency (a seqlock): the publisher makes `seq` odd before it writes a version into the
segment and even (with `version` set) once the blob and its digests are complete. A reader
checks `seq` is even and `version` is the one it wants before copying, and that `seq` is
unchanged after; a changed `seq` means the arena was reused mid-read (a torn read), which the
reader reports and never uses. The chunk digests of the manifest are checked on the copy as
well, so a torn read that the seqlock missed, or corrupt memory, is rejected too.

Chunk pipelining: while it writes (odd `seq`), the publisher stamps chunk i with that `seq` as
soon as the chunk's bytes are in place, so a reader told of the write (the `begin` notice,
`weights_publisher`) copies chunk i while later chunks are still being written, instead of
waiting for the whole version. Such a read is good only if `seq` is still that write's (odd) or
its commit (`seq + 1`) after the last copy: any later write first moves `seq` past both. Its
digests are compared with the manifest's, received over ZeroMQ once the version is committed.

Same-host detection: the publisher names its host (`host_id`: hostname and kernel boot id) in
each announcement and manifest reply; a subscriber with the same host id opens the segment and
checks its random `token` (a container with its own /dev/shm, or a recycled file name, fails
that check) and otherwise fetches over ZeroMQ as before.
"""

from __future__ import annotations

import mmap
import os
import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

__all__ = ["HEADER", "ShmLocation", "ShmSegment", "ShmReader", "host_id", "default_shm_dir", "sweep_dead_segments"]

HEADER = 64
PAGE = 4096
_MAGIC = b"AFDWSHM2"  # 2: chunk stamps (a reader of layout 1 finds another magic and uses ZeroMQ)
_SEQ = struct.Struct("<Q")
_HEAD = struct.Struct("<8sQq16sQQQ")  # magic, seq, version, token, chunk_size, slots, data offset


def default_shm_dir() -> Optional[Path]:
    """`/dev/shm` where it exists (Linux), else None: shared memory is then off and ZeroMQ carries everything."""
    p = Path("/dev/shm")
    return p if p.is_dir() and os.access(p, os.W_OK) else None


def sweep_dead_segments(directory: Path) -> list[Path]:
    """Unlink the segments of publishers that died without closing (a SIGKILLed learner): /dev/shm is memory,
    and a crash-looping learner would otherwise leak a model-sized arena or three per restart. A segment is
    dead when no process has its pid (a reused pid keeps it, erring on the safe side). Returns what it removed."""
    removed = []
    for path in directory.glob("afd-weights-*-*"):
        try:
            pid = int(path.name.split("-")[2])
            os.kill(pid, 0)
        except ValueError:
            continue  # not one of ours
        except ProcessLookupError:
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass  # another publisher swept it first
        except PermissionError:
            continue  # alive, another user's
    return removed


def host_id() -> str:
    """Names this host for same-host detection: hostname plus the kernel's boot id (a rebooted or cloned
    host gets another id); the segment token still decides, since containers may share both."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "no-boot-id"
    return f"{socket.gethostname()}/{boot}"


@dataclass(frozen=True)
class ShmLocation:
    """Where a version's blob lies in shared memory (sent with the manifest reply)."""

    host: str
    path: str
    token: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"host": self.host, "path": self.path, "token": self.token}

    @classmethod
    def from_wire(cls, d: Any) -> Optional[ShmLocation]:
        """The location, or None for anything malformed (the subscriber then uses ZeroMQ)."""
        if not isinstance(d, dict):
            return None
        host, path, token = d.get("host"), d.get("path"), d.get("token")
        if not (isinstance(host, str) and isinstance(path, str) and isinstance(token, bytes) and len(token) == 16):
            return None
        return cls(host, path, token)


class ShmSegment:
    """The publisher's side: one shared-memory file holding an arena of `capacity` bytes.

    `data` is a `uint8` tensor over the blob area; write a version between `begin()` and
    `commit(version)`, calling `chunk_done(i)` as each `chunk_size` chunk is complete (in any
    order, from any thread). `close()` unlinks the file (readers that have it open keep their mapping).
    """

    def __init__(self, directory: Path, capacity: int, *, host: str, chunk_size: int) -> None:
        self.token = secrets.token_bytes(16)
        self.path = directory / f"afd-weights-{os.getpid()}-{self.token.hex()[:12]}"
        self.capacity = max(capacity, 1)
        slots = -(-self.capacity // chunk_size)
        self._data_at = -(-(HEADER + 8 * slots) // PAGE) * PAGE  # page aligned: copies out of it run at full speed
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, self._data_at + self.capacity)
            self._mm = mmap.mmap(fd, self._data_at + self.capacity)
        finally:
            os.close(fd)
        self._seq = 0
        self.slots = slots
        _HEAD.pack_into(self._mm, 0, _MAGIC, 0, -1, self.token, chunk_size, slots, self._data_at)
        self.data = torch.frombuffer(self._mm, dtype=torch.uint8, offset=self._data_at, count=self.capacity)
        self.location = ShmLocation(host, str(self.path), self.token)

    def begin(self) -> None:
        """Mark the segment as being written (readers that overlap this see `seq` change)."""
        self._seq += 1
        _SEQ.pack_into(self._mm, 8, self._seq)

    def chunk_done(self, index: int) -> None:
        """Chunk `index` of the write in progress is in place (a following reader may copy it now).

        Written after the chunk's bytes by the same thread: x86 keeps stores in order, and on weaker
        orderings a reader's digest check (against the manifest) still refuses what it copied too early."""
        _SEQ.pack_into(self._mm, HEADER + 8 * index, self._seq)

    def commit(self, version: int) -> None:
        """The blob of `version` is complete."""
        struct.pack_into("<q", self._mm, 16, version)
        self._seq += 1
        _SEQ.pack_into(self._mm, 8, self._seq)

    def abort(self) -> None:
        """The write in progress is abandoned (refused NaN/Inf): an even `seq` with no version, so a reader
        following it gives up at once instead of waiting for a commit that never comes."""
        self.commit(-1)

    def close(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        del self.data  # the tensor holds a buffer export of the mapping: drop it before closing
        try:
            self._mm.close()
        except BufferError:  # a view of it is still alive (a send in flight): the GC unmaps it later
            pass


class ShmReader:
    """The subscriber's side: an open, read-only mapping of one publisher segment."""

    def __init__(self, loc: ShmLocation) -> None:
        fd = os.open(loc.path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size < HEADER:
                raise OSError(f"{loc.path}: {size} bytes is not a weights segment")
            # MAP_POPULATE: the page tables are filled in one go, not by a fault per 4 KiB page on the first copy
            self._mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                                 prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, _, _, token, chunk_size, slots, data_at = _HEAD.unpack_from(self._mm, 0)
        if magic != _MAGIC or token != loc.token or not HEADER + 8 * slots <= data_at <= size:
            self._mm.close()
            raise OSError(f"{loc.path}: not the announced segment (magic, token or layout differ)")
        self.location = loc
        self.chunk_size, self.slots = chunk_size, slots
        self.blob = np.frombuffer(self._mm, dtype=np.uint8, offset=data_at)  # read-only: a PROT_READ mapping

    def stamp(self) -> tuple[int, int]:
        """`(seq, version)` now; an odd `seq` means a write is in progress."""
        _, seq, version, *_ = _HEAD.unpack_from(self._mm, 0)
        return seq, version

    def chunk_stamp(self, index: int) -> int:
        """The `seq` of the write that last completed chunk `index` (0: never written)."""
        return _SEQ.unpack_from(self._mm, HEADER + 8 * index)[0] if 0 <= index < self.slots else 0

    def close(self) -> None:
        del self.blob
        try:
            self._mm.close()
        except BufferError:  # a slice of `blob` is still referenced (e.g. by a traceback): the GC unmaps it later
            pass
