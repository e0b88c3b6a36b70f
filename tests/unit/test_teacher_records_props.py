"""Property tests of the teacher's Redis records: the planner's queue record and the clip cache
record. Any bytes give a record or the documented error (`ValueError` / `CacheRecordError`),
and what the writer packs, the reader returns."""

from __future__ import annotations

import msgpack
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from afd_async.teacher.actor import QUEUE_SCHEMA, QueueRecord, decode_record, encode_record
from afd_async.teacher.cache import CacheEntry, CacheRecordError, SchemaVersionError, TeacherMeta, decode_entry, encode_entry
from afd_async.video.clip import Clip

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)
_CACHE_KEYS = ["schema", "key", "prompt", "seed", "params", "frames", "shape", "dtype", "fps", "meta", "created_at"]


def _entry(t: int, h: int, w: int, seed: int, prompt: str) -> CacheEntry:
    frames = np.arange(t * h * w * 3, dtype=np.uint8).reshape(t, h, w, 3)
    meta = TeacherMeta(provider="openai", model="m", job_id="j1", latency_s=1.5, video_seconds=t / 8.0,
                       usage={"seconds": 2}, source={"fps": 24.0})
    return CacheEntry(key="k" * 8, prompt=prompt, seed=seed, params={"size": "32x32"}, clip=Clip(frames, 8.0),
                      meta=meta, created_at=1.7e9)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=128), values.map(lambda v: msgpack.packb(v)),
                 st.dictionaries(st.sampled_from(["schema", "prompt", "seed", "prompt_id"]), values).map(msgpack.packb)))
def test_queue_record_any_bytes_give_a_record_or_value_error(raw: bytes) -> None:
    try:
        rec = decode_record(raw)
    except ValueError as e:
        assert str(e)
        return
    assert isinstance(rec, QueueRecord) and rec.raw == raw and rec.prompt.strip() and isinstance(rec.seed, int)


@settings(max_examples=150, deadline=None)
@given(prompt=st.text(min_size=1, max_size=60).filter(str.strip), seed=st.integers(-(2**63), 2**63 - 1),
       pid=st.one_of(st.none(), st.text(min_size=1, max_size=20)))
def test_queue_record_round_trip(prompt: str, seed: int, pid: str | None) -> None:
    rec = decode_record(encode_record(prompt, seed, pid))
    assert (rec.prompt, rec.seed) == (prompt, seed) and (pid is None or rec.prompt_id == pid)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=128), values.map(msgpack.packb),
                 st.dictionaries(st.sampled_from(_CACHE_KEYS), values).map(
                     lambda d: msgpack.packb({"schema": 1, "dtype": "uint8", **d}))))
def test_cache_record_any_bytes_give_an_entry_or_cache_record_error(blob: bytes) -> None:
    try:
        entry = decode_entry(blob)
    except CacheRecordError as e:
        assert str(e)
        return
    assert isinstance(entry, CacheEntry) and entry.clip.frames.dtype == np.uint8


@settings(max_examples=60, deadline=None)
@given(t=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 2**31),
       prompt=st.text(max_size=40))
def test_cache_record_round_trip(t: int, h: int, w: int, seed: int, prompt: str) -> None:
    e = _entry(t, h, w, seed, prompt)
    got = decode_entry(encode_entry(e), use=2)
    assert np.array_equal(got.clip.frames, e.clip.frames) and got.clip.fps == e.clip.fps
    assert (got.key, got.prompt, got.seed, got.params, got.meta, got.use) == (e.key, e.prompt, e.seed, e.params, e.meta, 2)


def test_wrong_schema_versions_are_named() -> None:
    blob = msgpack.packb({**msgpack.unpackb(encode_entry(_entry(1, 2, 2, 0, "p"))), "schema": 2})
    try:
        decode_entry(blob)
    except SchemaVersionError as e:
        assert "schema 2" in str(e) and "understands 1" in str(e)
    else:
        raise AssertionError("a schema-2 cache record was accepted")
    raw = msgpack.packb({"schema": QUEUE_SCHEMA + 1, "prompt": "p", "seed": 0})
    try:
        decode_record(raw)
    except ValueError as e:
        assert f"schema {QUEUE_SCHEMA + 1}" in str(e) and f"reads {QUEUE_SCHEMA}" in str(e)
    else:
        raise AssertionError("a future queue record was accepted")
