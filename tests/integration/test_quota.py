"""SharedQuota on a real redis-server: GCRA rate, leases, AIMD, shared pause."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from afd_async.teacher.quota import QuotaTimeout, SharedQuota


def run(coro: Awaitable[Any], timeout_s: float = 30.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(main())


def gcra_violations(times_s: list[float], rate_per_min: float, burst: int, slack_s: float = 0.002) -> list[str]:
    """Windows that admitted more than `burst + floor(L / T)` creates (the GCRA invariant)."""
    t = sorted(times_s)
    interval = 60.0 / rate_per_min
    bad = []
    for i, j in itertools.combinations(range(len(t)), 2):
        allowed = burst + int((t[j] - t[i] + slack_s) / interval)
        if j - i + 1 > allowed:
            bad.append(f"{j - i + 1} admits in {t[j] - t[i]:.4f}s (allowed {allowed})")
    return bad


@pytest.fixture()
def clients(redis_server, redis_client) -> Callable[[], aioredis.Redis]:
    """Factory for fresh async clients (each its own connection pool) on a flushed database."""

    def make() -> aioredis.Redis:
        return aioredis.Redis(**redis_server.client_kwargs(), socket_timeout=15)

    return make


def quota(client: aioredis.Redis, account: str = "acct", **kw: Any) -> SharedQuota:
    base: dict[str, Any] = dict(create_rate_per_min=600.0, burst=1, max_in_flight=100, lease_ttl_s=30.0, aimd_cooldown_s=0.0)
    base.update(kw)
    return SharedQuota(client, account, **base)


def test_gcra_admits_exactly_the_rate_across_async_clients(clients):
    rate, burst, duration = 1200.0, 3, 1.0  # 20/s

    async def main() -> list[float]:
        qs = [quota(clients(), create_rate_per_min=rate, burst=burst) for _ in range(4)]
        loop = asyncio.get_running_loop()
        stop = loop.time() + duration
        admitted: list[float] = []

        async def worker(q: SharedQuota) -> None:
            while loop.time() < stop:
                try:
                    lease = await q.acquire(timeout_s=max(0.001, stop - loop.time()))
                except QuotaTimeout:
                    return
                admitted.append(lease.acquired_at)
                await lease.release()

        await asyncio.gather(*(worker(q) for q in qs))
        return admitted

    admitted = run(main())
    assert gcra_violations(admitted, rate, burst) == []
    # Waiting on the script's wait time keeps the admitted rate at the configured one.
    expected = burst + duration * rate / 60.0
    assert expected - 3 <= len(admitted) <= expected + 1, len(admitted)


def test_rate_token_not_consumed_while_slots_full(clients):
    async def main() -> None:
        q = quota(clients(), create_rate_per_min=6.0, burst=2, max_in_flight=1)
        a, reason, _ = await q.try_acquire()
        assert a is not None and reason == "ok"
        for _ in range(5):
            lease, reason, wait = await q.try_acquire()
            assert lease is None and reason == "full" and wait > 20  # bounded by the lease expiry
        await a.release()
        b, reason, _ = await q.try_acquire()
        assert b is not None, "the second burst token must still be there"
        await b.release()
        c, reason, wait = await q.try_acquire()
        assert c is None and reason == "rate" and 5 < wait <= 10.01

    run(main())


def test_leases_cap_in_flight_and_release_wakes_a_waiter(clients):
    async def main() -> None:
        qs = [quota(clients(), max_in_flight=3, create_rate_per_min=60000.0, burst=10) for _ in range(3)]
        held = [await qs[i % 3].acquire(timeout_s=2) for i in range(3)]
        with pytest.raises(QuotaTimeout) as ei:
            await qs[0].acquire(timeout_s=0.2)
        assert ei.value.reason == "full"
        assert (await qs[1].snapshot())["in_flight"] == 3
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        waiter = asyncio.create_task(qs[2].acquire(timeout_s=10))
        await held[0].release()
        got = await waiter
        # Woken by the release, not by the 30 s lease expiry.
        assert loop.time() - t0 < 3.0
        for lease in [got, *held[1:]]:
            await lease.release()
        assert (await qs[0].snapshot())["in_flight"] == 0

    run(main())


def test_many_concurrent_holders_never_exceed_the_cap(clients):
    async def main() -> None:
        qs = [quota(clients(), max_in_flight=2, create_rate_per_min=60000.0, burst=20) for _ in range(3)]
        holding = 0
        peak = 0

        async def job(q: SharedQuota) -> None:
            nonlocal holding, peak
            async with await q.acquire(timeout_s=10):
                holding += 1
                peak = max(peak, holding)
                await asyncio.sleep(0.01)  # the job's work, not synchronisation
                holding -= 1

        await asyncio.gather(*(job(qs[i % 3]) for i in range(12)))
        assert peak == 2

    run(main())


def test_heartbeat_keeps_a_lease_and_lost_lease_is_reinserted(clients):
    async def main() -> None:
        q = quota(clients(), max_in_flight=1, lease_ttl_s=0.3, heartbeat_interval_s=0.05)
        async with await q.acquire(timeout_s=1) as lease:
            await asyncio.sleep(0.7)  # > 2 TTLs of wall time pass; the heartbeat must keep the slot
            lease2, reason, _ = await q.try_acquire()
            assert lease2 is None and reason == "full"
            assert not lease.lost
        assert (await q.snapshot())["in_flight"] == 0
        other = await q.acquire(timeout_s=1)
        assert await other.heartbeat() is True

    run(main())


def test_aimd_halves_once_per_cooldown_and_recovers(clients):
    async def main() -> None:
        a = quota(clients(), max_in_flight=8, aimd_decrease=0.5, aimd_increase=1.0, aimd_cooldown_s=0.0)
        b = quota(clients(), max_in_flight=8, aimd_decrease=0.5, aimd_increase=1.0, aimd_cooldown_s=0.0)
        assert await a.on_throttle() == 4.0
        assert (await b.snapshot())["limit"] == 4.0  # shared
        assert await b.on_throttle() == 2.0
        assert await a.on_throttle() == 1.0
        assert await a.on_throttle() == 1.0  # floor
        # The reduced limit caps leases for every client.
        lease = await b.acquire(timeout_s=1)
        with pytest.raises(QuotaTimeout):
            await a.acquire(timeout_s=0.1)
        await lease.release()
        for want in (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 8.0):
            assert await a.on_success() == want
        slow = quota(clients(), "other", max_in_flight=8, aimd_cooldown_s=60.0)
        assert await slow.on_throttle() == 4.0
        assert await slow.on_throttle() == 4.0  # a burst of throttles seen by N actors halves once

    run(main())


def test_pause_until_is_honoured_by_all_clients(clients):
    async def main() -> None:
        qs = [quota(clients(), create_rate_per_min=60000.0, burst=10) for _ in range(3)]
        until = await qs[0].pause_for(0.4)
        assert (await qs[1].snapshot())["paused_until"] == pytest.approx(until, abs=1e-3)
        assert (await qs[2].pause_for(0.1)) == pytest.approx(until, abs=1e-3)  # never shortened
        lease, reason, wait = await qs[1].try_acquire()
        assert lease is None and reason == "paused" and 0.2 < wait <= 0.4
        leases = await asyncio.gather(*(q.acquire(timeout_s=3) for q in qs))
        assert all(lease.acquired_at >= until for lease in leases)
        lim = await qs[2].on_throttle(retry_after_s=0.2)
        assert lim < 100 and (await qs[0].snapshot())["paused_until"] is not None

    run(main())


def test_config_validation(clients):
    with pytest.raises(ValueError, match="create_rate_per_min"):
        SharedQuota(clients(), "a", create_rate_per_min=0, max_in_flight=1)
    with pytest.raises(ValueError, match="braces"):
        SharedQuota(clients(), "a}b", create_rate_per_min=1, max_in_flight=1)


def test_password_never_in_errors_or_logs(tmp_path, caplog):
    from afd_async.store.redis_server import RedisServer

    secret = "pw-never-shown-42"
    with RedisServer(data_dir=str(tmp_path), password=secret) as server:
        async def main() -> str:
            q = SharedQuota(aioredis.Redis(**server.client_kwargs()), "pw", create_rate_per_min=60.0, max_in_flight=1)
            held = await q.acquire(timeout_s=1)
            try:
                await q.acquire(timeout_s=0.05)
            except QuotaTimeout as e:
                text = f"{e!r} {e} {q.state_dict()} {await q.snapshot()} {held.lease_id}"
            await held.release()
            return text

        with caplog.at_level("DEBUG"):
            text = run(main())
    assert secret not in text and secret not in caplog.text


def test_a_release_wakes_a_waiter_of_the_same_process_and_only_one_task_listens_on_redis(redis_server, redis_client):
    """Issue 19.1: the next create follows a release by one script round trip, not a hop through Redis
    to whichever process's waiter is first in line; and N waiting tasks hold one blocking connection."""
    import uuid

    from afd_async.testing.waiting import wait_until

    def listening(name: str) -> int:
        return sum(1 for c in redis_client.client_list() if c.get("cmd") == "blpop" and c.get("name") == name)

    async def main() -> None:
        names = [f"p0-{uuid.uuid4().hex[:8]}", f"p1-{uuid.uuid4().hex[:8]}"]
        other, q = (quota(aioredis.Redis(**redis_server.client_kwargs(), socket_timeout=60, client_name=n),
                          max_in_flight=1, max_block_s=30.0) for n in names)  # a missed wake-up would cost 30 s
        held = await q.acquire(1)
        first = asyncio.create_task(other.acquire(60))  # another process, first in line on the wake list
        await asyncio.to_thread(wait_until, lambda: listening(names[0]) == 1, 10, what="the other process listens")
        waiters = [asyncio.create_task(q.acquire(60)) for _ in range(3)]
        await asyncio.to_thread(wait_until, lambda: listening(names[1]) == 1 and len(q._local_waiters) == 2, 10,
                                what="one listener on the wake list in this process, two local waiters")
        local = list(q._local_waiters)
        await held.release()  # Redis hands its wake-up to the other process (first in line)...
        assert sum(f.done() for f in local) == 1  # ...and the release itself woke one waiter here
        done, _ = await asyncio.wait([first, *waiters], timeout=5, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1
        for t in [first, *waiters]:
            t.cancel()
        await asyncio.gather(first, *waiters, return_exceptions=True)
        for quota_ in (other, q):
            await quota_.redis.aclose()

    # 75 s: on Python <= 3.11, asyncio.wait_for loses a cancel that lands as its future completes (a wake-up
    # passed on by the cancelled listener), and that waiter then waits out its block (30 s) before it ends
    run(main(), timeout_s=75.0)
