"""TeacherCache on a real redis-server: round trip, reuse budget, schema check, cost totals."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

import msgpack
import numpy as np
import pytest
import redis.asyncio as aioredis

from afd_async.teacher.cache import (
    SchemaVersionError,
    TeacherCache,
    TeacherMeta,
    decode_entry,
    encode_entry,
)
from afd_async.teacher.contract import JobRequest
from afd_async.video.clip import Clip


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(main())


def clip(seed: int, t: int = 5) -> Clip:
    rng = np.random.default_rng(seed)
    return Clip(frames=rng.integers(0, 256, size=(t, 6, 8, 3), dtype=np.uint8), fps=12.0)


def meta(job: str, usage: dict[str, Any] | None = None) -> TeacherMeta:
    return TeacherMeta(provider="fake", model="m", job_id=job, latency_s=2.0, video_seconds=5 / 12.0,
                       usage=usage or {})


@pytest.fixture()
def aclient(redis_server, redis_client):
    def make() -> aioredis.Redis:
        return aioredis.Redis(**redis_server.client_kwargs())

    return make


def test_put_get_round_trip_and_first_writer_wins(aclient):
    async def main() -> None:
        cache = TeacherCache(aclient())
        req = JobRequest(prompt="a ball falls", seed=3, model="m", params={"res": "96p", "dur": 2})
        c = clip(1)
        entry, stored = await cache.put("fake", req, c, meta("j1"))
        assert stored
        got = await TeacherCache(aclient()).get("fake", req)
        assert got is not None and got.key == entry.key and got.seed == 3 and got.params == req.params
        np.testing.assert_array_equal(got.clip.frames, c.frames)
        assert got.clip.fps == 12.0 and got.meta.job_id == "j1" and got.meta.provider == "fake"
        again, stored2 = await cache.put("fake", req, clip(2), meta("j2"))
        assert not stored2 and again.meta.job_id == "j1"  # a duplicate job never replaces or double-counts
        assert (await cache.cost())["jobs"] == 1
        assert await cache.get("fake", JobRequest(prompt="a ball falls", seed=4, model="m", params=req.params)) is None
        assert await cache.get("other", req) is None  # provider is part of the key

    run(main())


def test_reuse_count_then_prompt_needs_a_new_seed(aclient):
    async def main() -> None:
        cache = TeacherCache(aclient(), reuse_count=2)
        p = "two blocks collide"
        assert await cache.take(p) is None and await cache.next_seed(p) == 0
        await cache.put("fake", JobRequest(prompt=p, seed=0), clip(0), meta("j0"))
        assert await cache.next_seed(p) == 1
        await cache.put("fake", JobRequest(prompt=p, seed=1), clip(1), meta("j1"))
        await cache.put("fake", JobRequest(prompt="other", seed=0), clip(5), meta("j5"))
        assert set(await cache.ready_prompts()) == {p, "other"}
        uses = [await cache.take(p) for _ in range(5)]
        assert [(u.seed, u.use) for u in uses if u] == [(0, 1), (0, 2), (1, 1), (1, 2)]
        assert uses[4] is None
        assert await cache.ready_prompts() == ["other"]
        assert await cache.next_seed(p) == 2
        assert (await cache.cost())["pairs"] == 4

    run(main())


def test_clips_are_taken_in_put_order_even_within_one_clock_tick(aclient, monkeypatch):
    """The flake of issue 14: puts in the same millisecond tied and came back ordered by digest."""
    import types

    import afd_async.teacher.cache as cache_mod

    monkeypatch.setattr(cache_mod, "time", types.SimpleNamespace(time=lambda: 1_700_000_000.0))

    async def main() -> None:
        cache = TeacherCache(aclient(), reuse_count=1)
        seeds = list(range(12))  # 12 digests: the chance they sort in put order by accident is 1/12!
        for s in seeds:
            await cache.put("fake", JobRequest(prompt="p", seed=s), clip(s), meta(f"j{s}"))
        assert [(await cache.take("p")).seed for _ in seeds] == seeds

    run(main())


def test_concurrent_takers_never_exceed_the_reuse_budget(aclient):
    async def main() -> None:
        cache = TeacherCache(aclient(), reuse_count=3)
        await cache.put("fake", JobRequest(prompt="p", seed=0), clip(0), meta("j"))
        takers = [TeacherCache(aclient(), reuse_count=3) for _ in range(4)]
        got = await asyncio.gather(*(t.take("p") for t in takers for _ in range(3)))
        assert sorted(g.use for g in got if g) == [1, 2, 3]

    run(main())


def test_unknown_schema_is_rejected(aclient):
    async def main() -> None:
        cache = TeacherCache(aclient())
        req = JobRequest(prompt="p", seed=0)
        entry, _ = await cache.put("fake", req, clip(0), meta("j"))
        d = msgpack.unpackb(encode_entry(entry), raw=False)
        d["schema"] = 99
        await cache.redis.set(f"afd:teacher:cache:clip:{entry.key}", msgpack.packb(d, use_bin_type=True))
        with pytest.raises(SchemaVersionError, match="schema 99"):
            await cache.get("fake", req)
        with pytest.raises(SchemaVersionError):
            decode_entry(msgpack.packb([1, 2, 3]))

    run(main())


def test_cost_totals_and_per_pair(aclient):
    async def main() -> None:
        cache = TeacherCache(aclient(), reuse_count=2)
        await cache.put("fake", JobRequest(prompt="a", seed=0), clip(0), meta("j0", {"credits": 1.5, "tier": "x"}))
        await cache.put("fake", JobRequest(prompt="b", seed=0), clip(1), meta("j1", {"credits": 2.5}))
        for p in ("a", "a", "b", "b"):
            assert await cache.take(p) is not None
        c = await cache.cost()
        assert c["jobs"] == 2 and c["pairs"] == 4
        assert c["video_seconds"] == pytest.approx(2 * 5 / 12.0)
        assert c["usage"] == {"credits": pytest.approx(4.0)}  # non-numeric usage is kept in the clip, not summed
        assert c["per_pair"]["usage:credits"] == pytest.approx(1.0)
        assert c["per_pair"]["jobs"] == pytest.approx(0.5)
        s = await cache.stats()
        assert s["ready_prompts"] == 0 and s["reuse_count"] == 2

    run(main())
