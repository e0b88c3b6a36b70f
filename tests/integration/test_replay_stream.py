"""Pair stream on a real redis-server: round trips, groups, dedupe, dead letters, blobs."""

from __future__ import annotations

import pytest
import redis
import torch

from afd_async.codec import pack, unpack
from afd_async.config.teacher import TeacherConfig
from afd_async.replay import Pair, PairReader, PairWriter, TeacherClipMissing, TeacherClipStore
from afd_async.replay.examples import make_pair, same_pair
from afd_async.replay.pair import encode_pair
from afd_async.replay.writer import blob_key
from afd_async.teacher.cache import CacheEntry, TeacherMeta, encode_entry
from afd_async.teacher.clips import CacheClipStore, clip_record_key, teacher_clip_key
from afd_async.video.clip import Clip

S = "t:pairs"


def _reader(r, group: str = "student", consumer: str = "c0", **kw) -> PairReader:
    return PairReader(r, stream=S, group=group, consumer=consumer, **kw)


@pytest.mark.parametrize("inline_max_bytes", [1 << 30, 0])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_round_trip_inline_and_blob(redis_client, inline_max_bytes: int, dtype: torch.dtype) -> None:
    pairs = [make_pair(i, latent_dtype=dtype, d_version=i if i % 2 else None) for i in range(5)]
    with PairWriter(redis_client, stream=S, inline_max_bytes=inline_max_bytes, blob_ttl_s=60) as w, _reader(redis_client) as rd:
        ids = [w.write(p) for p in pairs]
        got = rd.read(count=10, block_ms=100)
        assert [sid for sid, _ in got] == ids
        assert all(same_pair(a, b) for a, (_, b) in zip(pairs, got))
        assert rd.ack(ids) == ids
    assert redis_client.xpending(S, "student")["pending"] == 0
    if inline_max_bytes == 0:
        ttl = redis_client.pttl(blob_key(S, "pair-0"))
        assert 0 < ttl <= 60_000


def test_write_many_is_one_transaction_read_back_identically(redis_client) -> None:
    pairs = [make_pair(i, payload_bytes=100 << 10 if i % 2 else 4096) for i in range(6)]
    redis_client.config_resetstat()
    with PairWriter(redis_client, stream=S, inline_max_bytes=64 << 10, blob_ttl_s=60) as w, _reader(redis_client) as rd:
        ids = w.write_many(pairs)
        stats = redis_client.info("commandstats")
        assert stats["cmdstat_multi"]["calls"] == 1 and stats["cmdstat_exec"]["calls"] == 1
        assert stats["cmdstat_xadd"]["calls"] == 6 and stats["cmdstat_set"]["calls"] == 3  # the 100 KB ones as blobs
        got = rd.read(count=10, block_ms=100)
    assert [sid for sid, _ in got] == ids and all(same_pair(a, b) for a, (_, b) in zip(pairs, got))
    assert w.state_dict() | {"stream": S} == {"stream": S, "written": 6, "blobs": 3,
                                              "written_bytes": w.written_bytes}


def test_write_many_refused_by_redis_writes_nothing(redis_client) -> None:
    redis_client.set(blob_key(S, "pair-1"), b"x")
    redis_client.config_set("maxmemory", "1")  # every write is refused while queued: the transaction aborts
    try:
        with PairWriter(redis_client, stream=S, inline_max_bytes=0) as w, pytest.raises(redis.ResponseError, match="maxmemory"):
            w.write_many([make_pair(0), make_pair(1)])
    finally:
        redis_client.config_set("maxmemory", "0")
    assert redis_client.exists(S) == 0 and redis_client.get(blob_key(S, "pair-1")) == b"x" and w.written == 0


def test_consumers_split_a_group_and_groups_each_see_all(redis_client) -> None:
    with PairWriter(redis_client, stream=S) as w:
        a, b, d = _reader(redis_client, consumer="a"), _reader(redis_client, consumer="b"), _reader(redis_client, group="disc")
        for i in range(10):
            w.write(make_pair(i))
    got_a = a.read(count=4)
    got_b = b.read(count=100)
    ids_a, ids_b = {p.pair_id for _, p in got_a}, {p.pair_id for _, p in got_b}
    assert len(got_a) == 4 and not ids_a & ids_b and len(ids_a | ids_b) == 10
    assert {p.pair_id for _, p in d.read(count=100)} == ids_a | ids_b
    assert a.read(count=10, block_ms=10) == []


def test_duplicate_writes_are_trained_once_per_group(redis_client) -> None:
    p = make_pair(1)
    with PairWriter(redis_client, stream=S) as w:
        first = w.write(p)
        w.write(p)  # a writer's retry after a lost reply
        w.write(make_pair(2))
        w.write(p)
    a, b = _reader(redis_client, consumer="a"), _reader(redis_client, consumer="b")
    got = a.read(count=1) + b.read(count=10)
    assert sorted(x.pair_id for _, x in got) == ["pair-1", "pair-2"]
    assert [sid for sid, x in got if x.pair_id == "pair-1"] == [first]
    assert a.counters["duplicates"] + b.counters["duplicates"] == 2
    # the duplicates were acknowledged by the group; only the returned entries are pending
    assert redis_client.xpending(S, "student")["pending"] == 2
    # another group dedupes on its own
    assert sorted(x.pair_id for _, x in _reader(redis_client, group="disc").read(count=10)) == ["pair-1", "pair-2"]


def test_reclaimed_entry_cannot_be_acked_by_its_old_owner(redis_client) -> None:
    with PairWriter(redis_client, stream=S) as w:
        w.write(make_pair(1))
    old, new = _reader(redis_client, consumer="old"), _reader(redis_client, consumer="new")
    [(sid, _)] = old.read(count=1)
    [(sid2, p)] = new.reclaim(min_idle_ms=0)
    assert sid2 == sid and p.pair_id == "pair-1"  # the owner entry is returned again on reclaim
    assert old.ack([sid]) == [] and old.counters["ack_lost"] == 1
    assert new.ack([sid]) == [sid]
    assert new.ack([sid]) == []  # already acknowledged


def test_ack_is_owner_checked_in_a_batch_and_id_by_id(redis_client) -> None:
    with PairWriter(redis_client, stream=S) as w:
        ids = w.write_many([make_pair(i, payload_bytes=256) for i in range(60)])
    a = _reader(redis_client, consumer="a")
    assert [sid for sid, _ in a.read(count=60)] == ids
    redis_client.xclaim(S, "student", "b", 0, [ids[30]])  # another consumer took one over
    # 58 of a's entries lie between the first and last id: more than one XPENDING page, checked id by id
    assert a.ack([ids[59], ids[30], ids[0]]) == [ids[59], ids[0]] and a.counters["ack_lost"] == 1
    assert a.ack([ids[1], ids[1], ids[2]]) == [ids[1], ids[2]]  # one page; an id given twice is acked once
    assert _reader(redis_client, consumer="b").ack([ids[30]]) == [ids[30]]
    assert redis_client.xpending(S, "student")["pending"] == 55


def test_claim_and_ack_reload_their_scripts_after_the_server_lost_them(redis_client) -> None:
    with PairWriter(redis_client, stream=S) as w:
        w.write_many([make_pair(0), make_pair(1)])
    rd = _reader(redis_client)
    redis_client.script_flush()  # what a restarted redis-server has
    got = rd.read(count=10)
    assert [p.pair_id for _, p in got] == ["pair-0", "pair-1"]
    redis_client.script_flush()
    assert rd.ack([sid for sid, _ in got]) == [sid for sid, _ in got]


def test_restarted_consumer_rereads_its_pending_entries(redis_client) -> None:
    with PairWriter(redis_client, stream=S) as w:
        for i in range(3):
            w.write(make_pair(i))
    first = _reader(redis_client, consumer="w0")
    got = first.read(count=3)
    first.ack([got[0][0]])
    state = first.state_dict()
    again = _reader(redis_client, consumer="w0")
    again.load_state_dict(state)
    assert [sid for sid, _ in again.read(count=10, pending=True)] == [sid for sid, _ in got[1:]]
    assert again.last_id == got[-1][0] and again.counters["acked"] == 1
    with pytest.raises(ValueError, match="group"):
        _reader(redis_client, group="other").load_state_dict(state)


def test_corrupt_and_foreign_entries_are_dead_lettered(redis_client) -> None:
    good = make_pair(0)
    meta, parts = encode_pair(good)
    tensors = b"".join(parts)
    other_meta, _ = encode_pair(make_pair(9))
    v2 = {**unpack(meta, expect_kind="pair"), "schema": 2}  # a record from a newer writer
    redis_client.xadd(S, {b"m": b"\xc1garbage", b"t": tensors})
    redis_client.xadd(S, {b"m": pack(v2), b"t": tensors})
    redis_client.xadd(S, {b"m": pack({"kind": "weights", "schema": 1}), b"t": tensors})
    redis_client.xadd(S, {b"m": meta, b"t": tensors[:-3]})
    redis_client.xadd(S, {b"m": other_meta, b"t": tensors})  # payload of another pair
    redis_client.xadd(S, {b"m": meta})
    redis_client.xadd(S, {"unrelated": "x"})
    with PairWriter(redis_client, stream=S) as w:
        w.write(good)
    rd = _reader(redis_client)
    got = rd.read(count=100)
    assert [p.pair_id for _, p in got] == ["pair-0"] and same_pair(got[0][1], good)
    reasons = [d["reason"] for d in rd.dead_letters()]
    assert len(reasons) == 7 and rd.counters["dead_lettered"] == 7
    assert "bad pair message" in reasons[0] and "not an afd message" in reasons[0]
    assert "unsupported schema version 2" in reasons[1]
    assert "expected a 'pair' message" in reasons[2]
    assert "bad payload" in reasons[3] and "belongs to pair 'pair-0'" in reasons[4]
    assert "no payload" in reasons[5]
    assert redis_client.xpending(S, "student")["pending"] == 1  # only the good pair waits for its ack


def test_missing_blob_is_dead_lettered_and_does_not_block(redis_client) -> None:
    with PairWriter(redis_client, stream=S, inline_max_bytes=0, blob_ttl_s=30) as w:
        for i in range(3):
            w.write(make_pair(i))
    redis_client.delete(blob_key(S, "pair-1"))  # what TTL expiry leaves behind
    rd = _reader(redis_client)
    got = rd.read(count=10)
    assert [p.pair_id for _, p in got] == ["pair-0", "pair-2"]
    [dead] = rd.dead_letters()
    assert "expired or missing" in dead["reason"] and blob_key(S, "pair-1") in dead["reason"]
    assert unpack(dead["meta"], expect_kind="pair")["pair_id"] == "pair-1"


def test_reader_validates_blocking_and_client(redis_client, redis_server) -> None:
    import redis

    with pytest.raises(ValueError, match="decode_responses"):
        PairReader(redis.Redis(**redis_server.client_kwargs(), decode_responses=True), stream=S, group="g", consumer="c")
    timed = redis.Redis(**redis_server.client_kwargs(), socket_timeout=0.5)
    rd = PairReader(timed, stream=S, group="g", consumer="c")
    with pytest.raises(ValueError, match="socket timeout"):
        rd.read(count=1, block_ms=1000)
    with pytest.raises(ValueError, match="block_ms"):
        rd.read(count=1, block_ms=0)
    assert rd.read(count=1, block_ms=20) == []
    timed.close()


def test_pair_validation() -> None:
    p = make_pair(0)
    with pytest.raises(ValueError, match="student_rgb"):
        Pair(**{**_fields(p), "student_rgb": p.student_rgb.float()})
    with pytest.raises(ValueError, match="student_latent"):
        Pair(**{**_fields(p), "student_latent": p.student_latent[0]})
    with pytest.raises(ValueError, match="policy_version"):
        Pair(**{**_fields(p), "policy_version": -1})


def _fields(p: Pair) -> dict:
    from dataclasses import fields

    return {f.name: getattr(p, f.name) for f in fields(p)}


def test_teacher_clip_store_contract(redis_client) -> None:
    """The live `TeacherClipStore` (the teacher cache) returns the clip stored under a ref, or raises."""
    store = CacheClipStore(redis_client)
    assert isinstance(store, TeacherClipStore)
    frames = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8)
    ref = make_pair(0).teacher_ref  # a pair finds its teacher clip through its ref
    meta = TeacherMeta(provider="openai", model="m", job_id="j0", latency_s=0.1, video_seconds=5 / 16.0)
    entry = CacheEntry(key=ref, prompt="p", seed=0, params={}, clip=Clip(frames.numpy(), 16.0), meta=meta, created_at=0.0)
    redis_client.set(clip_record_key(ref), encode_entry(entry), px=60_000)
    clip = store.get(ref)
    assert torch.equal(clip.frames, frames) and clip.fps == 16.0
    assert clip.meta["job_id"] == "j0" and clip.meta["prompt"] == "p" and clip.meta["seed"] == 0
    clip.frames[0, 0, 0, 0] = 0  # a writable copy: the record's own frames are read-only
    assert [c.fps for c in store.get_many([ref, ref])] == [16.0, 16.0]
    with pytest.raises(TeacherClipMissing):
        store.get("clip-1")
    cfg = TeacherConfig()
    assert store.cached_ref(cfg, "p", 0) is None  # nothing cached for (prompt, seed): no ref, no payload read
    redis_client.set(clip_record_key(teacher_clip_key(cfg, "p", 0)), encode_entry(entry), px=60_000)
    assert store.cached_ref(cfg, "p", 0) == teacher_clip_key(cfg, "p", 0)
    with pytest.raises(TeacherClipMissing):
        store.get_many([ref, "clip-1"])
