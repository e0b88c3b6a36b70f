"""`PairSink` and `TeacherClipStore` contracts (`afd_async/seams.py`): Redis (PairWriter read back by a
PairReader; the teacher cache's `CacheClipStore`) and in-process (`MemoryPairLog`, `MemoryClipStore`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch

from afd_async.replay.examples import make_pair, same_pair
from afd_async.replay.memory import MemoryClipStore, MemoryPairLog
from afd_async.replay.pair import Pair
from afd_async.replay.reader import PairReader
from afd_async.replay.writer import PairWriter
from afd_async.seams import PairSink, TeacherClip, TeacherClipMissing, TeacherClipStore
from afd_async.teacher.cache import CacheEntry, TeacherMeta, encode_entry
from afd_async.teacher.clips import CacheClipStore, clip_record_key
from afd_async.video.clip import Clip

STREAM = "contract:pairs"


# ----------------------------------------------------------------------------------------------- PairSink

@dataclass
class Sink:
    sink: PairSink
    read_back: Callable[[], list[Pair]]


@pytest.fixture()
def redis_sink(redis_client) -> Iterator[Sink]:
    with PairWriter(redis_client, stream=STREAM, inline_max_bytes=2048) as writer, \
            PairReader(redis_client, stream=STREAM, group="contract", consumer="c0") as reader:
        yield Sink(writer, lambda: [p for _, p in reader.read(count=100, block_ms=100)])


@pytest.fixture()
def memory_sink() -> Iterator[Sink]:
    with MemoryPairLog() as log:
        yield Sink(log, lambda: list(log.pairs))


@pytest.fixture(params=["redis", "memory"])
def sink(request: pytest.FixtureRequest) -> Sink:
    return request.getfixturevalue(f"{request.param}_sink")


def test_is_a_pair_sink(sink: Sink) -> None:
    assert isinstance(sink.sink, PairSink)


def test_written_pairs_read_back_equal_in_order_with_distinct_ids(sink: Sink) -> None:
    pairs = [make_pair(i, payload_bytes=4096 if i % 2 else 512, policy_version=i) for i in range(4)]  # blobs and inline
    ids = [sink.sink.write(p) for p in pairs]
    assert len(set(ids)) == len(ids)
    got = sink.read_back()
    assert len(got) == len(pairs) and all(same_pair(a, b) for a, b in zip(pairs, got))


def test_write_many_is_write_of_each_in_order(sink: Sink) -> None:
    pairs = [make_pair(i, payload_bytes=4096 if i % 2 else 512) for i in range(6)]  # blobs and inline
    first = sink.sink.write(pairs[0])
    ids = sink.sink.write_many(pairs[1:])  # one call
    assert len(ids) == len(pairs) - 1 and len({first, *ids}) == len(pairs)
    assert sink.sink.write_many([]) == []
    got = sink.read_back()
    assert len(got) == len(pairs) and all(same_pair(a, b) for a, b in zip(pairs, got))


# ----------------------------------------------------------------------------------------------- TeacherClipStore

@dataclass
class Clips:
    store: TeacherClipStore
    put: Callable[[str, torch.Tensor, float], None]


@pytest.fixture()
def redis_clips(redis_client) -> Clips:
    def put(ref: str, frames: torch.Tensor, fps: float) -> None:  # as the teacher actor caches a clip
        meta = TeacherMeta(provider="openai", model="m", job_id="j", latency_s=0.1, video_seconds=len(frames) / fps)
        entry = CacheEntry(key=ref, prompt="p", seed=0, params={}, clip=Clip(frames.numpy(), fps), meta=meta,
                           created_at=0.0)
        redis_client.set(clip_record_key(ref), encode_entry(entry), px=60_000)

    return Clips(CacheClipStore(redis_client), put)


@pytest.fixture()
def memory_clips() -> Clips:
    store = MemoryClipStore()
    return Clips(store, lambda ref, frames, fps: store.put(ref, TeacherClip(frames=frames, fps=fps)))


@pytest.fixture(params=["redis", "memory"])
def clips(request: pytest.FixtureRequest) -> Clips:
    return request.getfixturevalue(f"{request.param}_clips")


def test_is_a_teacher_clip_store(clips: Clips) -> None:
    assert isinstance(clips.store, TeacherClipStore)


def test_get_returns_the_clip_stored_under_the_ref(clips: Clips) -> None:
    a = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    b = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    clips.put("ref-a", a, 16.0)
    clips.put("ref-b", b, 8.0)
    got = clips.store.get("ref-a")
    assert torch.equal(got.frames, a) and got.fps == 16.0
    assert torch.equal(clips.store.get("ref-b").frames, b)
    got.frames[0, 0, 0, 0] = 255 - int(got.frames[0, 0, 0, 0])  # the caller's copy: writing it changes nothing stored
    assert torch.equal(clips.store.get("ref-a").frames, a)


def test_a_missing_ref_is_teacher_clip_missing(clips: Clips) -> None:
    with pytest.raises(TeacherClipMissing):
        clips.store.get("never-stored")
