"""A published version's blob in the publisher's memory: where its bytes are written, and what is served.

The publisher copies a version into an arena (a shared-memory `ShmSegment`, or
a `HeapArena` with the same interface when there is no shared memory) so the
learner may keep training; `fill_chunk` writes one span of the canonical layout
(`weights_layout`) there. A version published without a copy is served straight
out of the caller's tensors (`tensor_segments`). Either way `ServedVersion.parts`
gives the zero-copy frames of a chunk. Nothing here hashes, checks or sends:
that is `weights_publisher`'s job.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np
import torch

from afd_async.transport.weights_layout import ALIGN, Manifest, TensorEntry
from afd_async.transport.weights_shm import ShmLocation, ShmSegment

__all__ = ["Arena", "HeapArena", "ServedVersion", "blob_view", "byte_view", "fill_chunk", "tensor_segments"]

_ZEROS = memoryview(bytes(ALIGN))


class HeapArena:
    """An arena in private memory (no shared-memory directory, or `shm` off): `ShmSegment`'s interface."""

    location: Optional[ShmLocation] = None

    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, 1)
        self.data = torch.empty(self.capacity, dtype=torch.uint8)

    def begin(self) -> None:
        pass

    def chunk_done(self, index: int) -> None:
        pass

    def commit(self, version: int) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


Arena = Union[HeapArena, ShmSegment]


class ServedVersion:
    """One served version: its manifest and the blob as ordered byte segments."""

    def __init__(self, manifest: Manifest, segments: list[tuple[int, memoryview]], arena: Optional[Arena]):
        self.manifest, self.arena = manifest, arena
        self._starts = [s for s, _ in segments]
        self._segments = segments

    def parts(self, start: int, stop: int) -> list[memoryview]:
        """Zero-copy views covering blob bytes `[start, stop)`."""
        out, i = [], max(bisect.bisect_right(self._starts, start) - 1, 0)
        while start < stop and i < len(self._segments):
            s, mv = self._segments[i]
            lo, hi = max(start, s), min(stop, s + mv.nbytes)
            if lo < hi:
                out.append(mv[lo - s : hi - s])
                start = hi
            i += 1
        return out


def blob_view(arena: torch.Tensor) -> memoryview:
    """`arena`'s bytes as a writable memoryview (what hashers and ZeroMQ frames take)."""
    return memoryview(arena.numpy())


def fill_chunk(arena: torch.Tensor, entries: list[TensorEntry], starts: list[int], sources: dict[str, torch.Tensor],
               start: int, stop: int) -> None:
    """Write blob bytes `[start, stop)` into `arena`: the tensors' bytes there, zeros between them.

    CPU sources are copied with NumPy: one thread per chunk (the pool runs chunks in parallel), where
    torch's copy would start its own intra-op threads on top of the pool's and, on a busy machine,
    wait on them (measured 9x slower on 2 loaded cores)."""
    out = arena.numpy()
    pos, i = start, max(bisect.bisect_right(starts, start) - 1, 0)
    while pos < stop and i < len(entries):
        e = entries[i]
        lo, hi = max(pos, e.offset), min(stop, e.offset + e.nbytes)
        if lo < hi:
            if lo > pos:
                arena[pos:lo].zero_()
            src = sources[e.name][lo - e.offset : hi - e.offset]
            if src.device.type == "cpu":
                np.copyto(out[lo:hi], src.numpy())
            else:
                arena[lo:hi].copy_(src)
            pos = hi
        elif e.offset >= stop:
            break
        i += 1
    if pos < stop:
        arena[pos:stop].zero_()


def byte_view(t: torch.Tensor) -> torch.Tensor:
    """`t`'s bytes as a flat `uint8` tensor on its device (a copy only when `t` is not contiguous)."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def tensor_segments(state_dict: Mapping[str, torch.Tensor], entries: list[Any]) -> list[tuple[int, memoryview]]:
    """Zero-copy segments over the caller's tensors, with zero padding between them."""
    segments, end = [], 0
    for e in entries:
        if e.offset > end:
            segments.append((end, _ZEROS[: e.offset - end]))
        t = state_dict[e.name].detach().contiguous()
        if e.nbytes:
            segments.append((e.offset, memoryview(t.reshape(-1).view(torch.uint8).numpy())))
        end = e.offset + e.nbytes
    return segments
