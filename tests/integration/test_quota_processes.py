"""SharedQuota across OS processes: one rate for all, and a killed holder's lease is reclaimed."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import time
from typing import Any

import redis.asyncio as aioredis

from afd_async.teacher.quota import QuotaTimeout, SharedQuota

RATE, BURST = 1200.0, 2  # 20 creates/s shared by every process
CTX = mp.get_context("spawn")  # no fork of a pytest process holding threads and event loops


def _gcra_worker(kwargs: dict[str, Any], barrier: Any, out: Any, duration: float) -> None:
    async def main() -> list[float]:
        q = SharedQuota(aioredis.Redis(**kwargs), "mp", create_rate_per_min=RATE, burst=BURST, max_in_flight=50)
        barrier.wait(timeout=60)
        stop = time.monotonic() + duration
        got: list[float] = []
        while time.monotonic() < stop:
            try:
                lease = await q.acquire(timeout_s=max(0.001, stop - time.monotonic()))
            except QuotaTimeout:
                break
            got.append(lease.acquired_at)
            await lease.release()
        return got

    out.put(asyncio.run(main()))


def _holder(kwargs: dict[str, Any], out: Any) -> None:
    async def main() -> None:
        q = SharedQuota(aioredis.Redis(**kwargs), "mp-hold", create_rate_per_min=6000.0, burst=5,
                        max_in_flight=1, lease_ttl_s=0.6, heartbeat_interval_s=0.1)
        async with await q.acquire(timeout_s=10):
            out.put("held")
            await asyncio.sleep(120)  # killed long before this ends

    asyncio.run(main())


def test_gcra_rate_is_shared_by_several_processes(redis_server, redis_client):
    from test_quota import gcra_violations  # same directory, imported by pytest's rootdir path

    n, duration = 3, 1.5
    barrier = CTX.Barrier(n)
    out = CTX.Queue()
    procs = [CTX.Process(target=_gcra_worker, args=(redis_server.client_kwargs(), barrier, out, duration))
             for _ in range(n)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=60) for _ in range(n)]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    admitted = [t for r in results for t in r]
    assert all(len(r) > 0 for r in results), [len(r) for r in results]
    assert gcra_violations(admitted, RATE, BURST) == []
    expected = BURST + duration * RATE / 60.0
    assert expected - 4 <= len(admitted) <= expected + 1, len(admitted)


def test_lease_of_a_killed_holder_expires_and_is_reclaimed(redis_server, redis_client):
    out = CTX.Queue()
    p = CTX.Process(target=_holder, args=(redis_server.client_kwargs(), out))
    p.start()
    try:
        assert out.get(timeout=60) == "held"

        async def main() -> float:
            q = SharedQuota(aioredis.Redis(**redis_server.client_kwargs()), "mp-hold",
                            create_rate_per_min=6000.0, burst=5, max_in_flight=1, lease_ttl_s=0.6)
            lease, reason, _ = await q.try_acquire()
            assert lease is None and reason == "full"  # the live holder's heartbeat keeps it
            p.kill()  # SIGKILL: no release, no more heartbeats
            p.join(timeout=10)
            t0 = time.monotonic()
            lease = await q.acquire(timeout_s=5)
            waited = time.monotonic() - t0
            await lease.release()
            return waited

        waited = asyncio.run(asyncio.wait_for(main(), 30))
        assert waited < 0.6 + 1.0  # reclaimed at expiry (the script's wait), not at the acquire timeout
    finally:
        if p.is_alive():
            p.kill()
        p.join(timeout=10)
    try:
        out.get_nowait()
    except queue.Empty:
        pass
