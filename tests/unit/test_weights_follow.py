"""Following a shared-memory write (`transport.weights_follow`) against a fake segment reader.

The real segment, publisher and subscriber are exercised in `tests/integration/test_weights_shm.py`; these pin the
follow's own decisions (copied / torn / dropped) and the `begin` notice's parsing without sockets or /dev/shm.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, cast

import subprocess
import sys

import numpy as np
import pytest
import torch

from afd_async.codec.msg import MessageError
from afd_async.transport.weights_follow import Begun, Followed, follow_slot, follow_write
from afd_async.transport.weights_layout import Manifest, chunk_hasher
from afd_async.transport.weights_shm import ShmLocation, ShmReader

HOST = "host-a"
LOC = ShmLocation(HOST, "/dev/shm/afd-weights-test", bytes(16))
CHUNK = 1024
TOTAL = 3 * CHUNK - 100  # a short last chunk


class FakeReader:
    """`ShmReader`'s surface: `stamps` yields the segment's (seq, version) per look; every chunk carries `chunk_seq`."""

    def __init__(self, stamps: Iterator[tuple[int, int]], chunk_seq: int) -> None:
        self.blob = np.arange(TOTAL, dtype=np.uint8)
        self.chunk_size = CHUNK
        self._stamps, self._last = stamps, (0, 0)
        self._chunk_seq = chunk_seq

    def stamp(self) -> tuple[int, int]:
        self._last = next(self._stamps, self._last)
        return self._last

    def chunk_stamp(self, index: int) -> int:
        return self._chunk_seq


def digests(blob: np.ndarray) -> tuple[bytes, ...]:
    out = []
    for lo in range(0, TOTAL, CHUNK):
        h = chunk_hasher("xxh3_128")
        h.update(memoryview(blob[lo : min(lo + CHUNK, TOTAL)]))
        out.append(h.digest())
    return tuple(out)


def notice(**over: Any) -> dict[str, Any]:
    return {"op": "begin", "version": 4, "total": TOTAL, "chunk_size": CHUNK, "chunk_hash": "xxh3_128",
            "shm": LOC.to_wire(), **over}


BEGUN = Begun(4, TOTAL, CHUNK, "xxh3_128", LOC)


def spare(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.uint8)


def follow(reader: FakeReader, take: Callable[[int], torch.Tensor] = spare, patience_s: float = 1.0) -> Followed:
    return follow_write(cast(ShmReader, reader), BEGUN, take, float("inf"), patience_s=patience_s)


def test_a_committed_write_is_copied_with_the_digests_of_its_chunks() -> None:
    reader = FakeReader(iter([(7, 3), (8, 4)]), chunk_seq=7)  # writing (odd seq 7), then committed as version 4
    followed = follow(reader)
    assert followed.outcome == "copied" and followed.buf is not None
    assert np.array_equal(followed.buf.numpy()[:TOTAL], reader.blob)
    assert followed.digests == digests(reader.blob)
    m = Manifest(4, "full", TOTAL, CHUNK, (), followed.digests, "", "xxh3_128")
    assert BEGUN.made(m, followed.digests)
    assert not BEGUN.made(Manifest(5, "full", TOTAL, CHUNK, (), followed.digests, "", "xxh3_128"), followed.digests)
    assert not BEGUN.made(m, followed.digests[:-1] + (bytes(16),))


def test_a_later_write_starting_meanwhile_is_torn() -> None:
    reader = FakeReader(iter([(7, 3), (9, 3)]), chunk_seq=7)
    assert follow(reader).outcome == "torn"


def test_a_write_already_committed_is_left_to_the_ordinary_read_without_taking_a_buffer() -> None:
    def no_buffer(n: int) -> torch.Tensor:
        raise AssertionError("a dropped follow must not take the spare buffer")

    reader = FakeReader(iter([(8, 4)]), chunk_seq=7)
    assert follow(reader, no_buffer).outcome == "dropped"


def test_a_write_that_ends_before_a_chunk_is_stamped_is_dropped() -> None:
    reader = FakeReader(iter([(7, 3), (8, 3)]), chunk_seq=5)  # chunks carry an older write's stamp; the write ends
    assert follow(reader).outcome == "dropped"


def test_a_stalled_writer_is_given_up_after_patience() -> None:
    reader = FakeReader(iter([(7, 3)]), chunk_seq=5)  # in progress for good, chunk 0 never stamped
    assert follow(reader, patience_s=0.01).outcome == "dropped"


def test_begin_notices_of_this_host_are_kept_and_others_are_not() -> None:
    assert Begun.from_wire(notice(), host=HOST, max_bytes=1 << 20) == BEGUN
    assert Begun.from_wire(notice(), host="host-b", max_bytes=1 << 20) is None
    assert Begun.from_wire(notice(), host=None, max_bytes=1 << 20) is None  # shared memory off
    assert Begun.from_wire(notice(), host=HOST, max_bytes=TOTAL - 1) is None  # larger than the subscriber accepts
    with pytest.raises(MessageError):
        Begun.from_wire(notice(chunk_hash="md5"), host=HOST, max_bytes=1 << 20)
    with pytest.raises(MessageError):
        Begun.from_wire(notice(shm=None), host=HOST, max_bytes=1 << 20)


def test_follower_slots_bound_the_followers_of_a_host_and_free_with_their_process(tmp_path) -> None:
    with follow_slot(tmp_path, 2) as a, follow_slot(tmp_path, 2) as b, follow_slot(tmp_path, 2) as c:
        assert (a, b, c) == (True, True, False)
    with follow_slot(tmp_path, 0) as none:
        assert none is False  # 0: following off
    # a follower process holding the only slot is killed: the lock goes with it, no stale slot
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, pathlib; from afd_async.transport.weights_follow import follow_slot\n"
         "with follow_slot(pathlib.Path(sys.argv[1]), 1) as ok:\n print(ok, flush=True); sys.stdin.read()",
         str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        with follow_slot(tmp_path, 1) as taken:
            assert taken is False
    finally:
        holder.kill()
        holder.wait()
    with follow_slot(tmp_path, 1) as freed:
        assert freed is True
