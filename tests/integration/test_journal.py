"""SubmitJournal: exactly-once create under races, resume by job id, ambiguous creates."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from typing import Any

import pytest
import redis.asyncio as aioredis

from afd_async.teacher.contract import JobHandle, JobRequest
from afd_async.teacher.gateway_errors import JobDeferred
from afd_async.teacher.journal import ClaimBusy, ClaimLost, SubmitJournal
from test_gateway_fakes import make_gateway, run

REQ = JobRequest(prompt="a pendulum swings", seed=7, model="m", params={"dur": 2})
CTX = mp.get_context("spawn")


@pytest.fixture()
def kw(redis_server, redis_client):
    return redis_server.client_kwargs()


def test_claim_is_exclusive_and_writes_are_fenced(kw):
    async def main() -> None:
        js = [SubmitJournal(aioredis.Redis(**kw), owner=f"a{i}", claim_ttl_s=5) for i in range(6)]
        key = js[0].key("fake", REQ)
        results = await asyncio.gather(*(j.claim(key) for j in js), return_exceptions=True)
        winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
        assert len(winners) == 1 and all(isinstance(r, ClaimBusy) for r in results if isinstance(r, BaseException))
        w, other = js[winners[0]], js[(winners[0] + 1) % 6]
        with pytest.raises(ClaimLost):
            await other.begin_submit(key, "fake", REQ)
        token = await w.begin_submit(key, "fake", REQ)
        assert not await w.mark_submitted(key, "wrong-token", JobHandle("fake", "j1"))
        assert await w.mark_submitted(key, token, JobHandle("fake", "j1"))
        with pytest.raises(RuntimeError, match="already 'submitted'"):
            await w.begin_submit(key, "fake", REQ)  # a recorded job is never created again
        assert await w.finish(key, "done", result_key="r") == "done"
        assert await w.finish(key, "failed") == "done"  # terminal states are final
        rec = await other.get(key)
        assert rec.state == "done" and rec.handle == JobHandle("fake", "j1") and rec.submits == 1

    run(main())


def test_racing_actors_submit_exactly_once(kw):
    async def main() -> None:
        gws = [make_gateway(kw, claim_wait_s=10.0, provider_kw={"polls_to_finish": 3}) for _ in range(4)]
        entries = await asyncio.gather(*(gw.run_job(REQ) for gw, _ in gws))
        assert len({e.meta.job_id for e in entries}) == 1
        assert await gws[0][1].counter("submits") == 1

    run(main())


def _actor_that_dies(kwargs: dict[str, Any]) -> None:
    from test_gateway_fakes import make_gateway as mk

    async def main() -> None:
        gw, _ = mk(kwargs, journal_kw={"claim_ttl_s": 0.5})
        await gw.run_job(REQ)  # the provider holds the job; the parent kills this process while polling

    asyncio.run(main())


def test_actor_killed_after_submit_is_resumed_by_job_id(kw):
    async def main() -> None:
        gw, fake = make_gateway(kw, claim_wait_s=10.0)
        await fake.hold(True)
        p = CTX.Process(target=_actor_that_dies, args=(kw,))
        p.start()
        try:
            created = await fake.wait_event(timeout_s=60)
            assert created.startswith("created:")
            assert (await fake.wait_event()).startswith("polled:")  # the job id is journaled before polling
            p.kill()
            p.join(timeout=10)
            rec = await gw.journal.get(gw.journal.key("fake", REQ))
            assert rec.state == "submitted" and rec.handle.job_id == created.split(":")[1]
            await fake.hold(False)
            entry = await gw.run_job(REQ)  # waits for the dead actor's claim to lapse, then resumes
        finally:
            if p.is_alive():
                p.kill()
            p.join(timeout=10)
        assert entry.meta.job_id == created.split(":")[1]
        assert await fake.counter("submits") == 1
        assert gw.counters["resumed"] == 1 and (await gw.journal.stats())["resumed"] == 1

    run(main(), 90)


async def _die_mid_create(kw: dict[str, Any], *, created: bool) -> None:
    """An actor that is cut off inside `client.submit` (with or without the job having been created)."""
    gw, fake = make_gateway(kw)
    await fake.inject("submit", action="hang_after_create" if created else "hang_before_create")
    task = asyncio.create_task(gw.run_job(REQ))
    await fake.wait_event()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await gw.journal.get(gw.journal.key("fake", REQ))).state == "submitting"


def test_ambiguous_create_resolved_by_lookup_resumes_the_job(kw):
    async def main() -> None:
        await _die_mid_create(kw, created=True)
        gw, fake = make_gateway(kw, lookup=True)
        entry = await gw.run_job(REQ)
        assert await fake.counter("submits") == 1 and await fake.counter("lookups") == 1
        assert entry.meta.possible_duplicate is False
        assert (await gw.journal.stats())["found_by_lookup"] == 1

    run(main())


def test_ambiguous_create_that_never_happened_is_resubmitted_safely(kw):
    async def main() -> None:
        await _die_mid_create(kw, created=False)
        gw, fake = make_gateway(kw, lookup=True)
        entry = await gw.run_job(REQ)
        assert await fake.counter("submits") == 1 and entry.meta.possible_duplicate is False
        assert (await gw.journal.stats()).get("possible_duplicates", 0) == 0

    run(main())


def test_ambiguous_create_without_lookup_waits_then_counts_a_possible_duplicate(kw):
    async def main() -> None:
        await _die_mid_create(kw, created=True)
        gw, fake = make_gateway(kw, journal_kw={"ambiguity_timeout_s": 3600.0})
        with pytest.raises(JobDeferred, match="ambiguous"):
            await gw.run_job(REQ)
        rec = await gw.journal.get(gw.journal.key("fake", REQ))
        assert rec.state == "ambiguous" and await fake.counter("submits") == 1
        late, _ = make_gateway(kw, journal_kw={"ambiguity_timeout_s": 0.0})
        entry = await late.run_job(REQ)
        assert entry.meta.possible_duplicate is True
        assert await fake.counter("submits") == 2
        stats = await late.journal.stats()
        assert stats["possible_duplicates"] == 1 and stats["ambiguous"] == 1

    run(main())


def test_slow_owner_can_still_record_its_job_id_after_ambiguity(kw):
    async def main() -> None:
        slow = SubmitJournal(aioredis.Redis(**kw), owner="slow", claim_ttl_s=0.3)
        key = slow.key("fake", REQ)
        await slow.claim(key)
        token = await slow.begin_submit(key, "fake", REQ)
        other = SubmitJournal(aioredis.Redis(**kw), owner="other", claim_ttl_s=5)
        claim = await other.claim(key, wait_s=5)  # waits out the slow owner's claim
        assert claim.record.state == "submitting"
        state, elapsed = await other.mark_ambiguous(key)
        assert state == "ambiguous" and elapsed >= 0.25
        assert await slow.mark_submitted(key, token, JobHandle("fake", "late-job"))  # fenced by token, not claim
        rec = await other.get(key)
        assert rec.state == "submitted" and rec.handle.job_id == "late-job"

    run(main())
