"""Many teacher jobs at once: `run_many` drives one `TeacherGateway` with N workers.

Split from `gateway.py` (one job's protocol) because the worker pool, its
drain-on-stop and its outcome counts are a separate concern: a gateway can be
driven by this pool (tests, benchmarks) or by the teacher actor's own workers
(`actor.TeacherActor`, which also owns a reliable prompt queue).

    report = await run_many(gateway, prompts, concurrency=8)
    gateway.stop()                                              # from elsewhere: drain, then hand back
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterable, Optional

from afd_async.teacher.contract import JobRequest
from afd_async.teacher.gateway_errors import GatewayHalted, JobDeadLettered, JobDeferred, JobFailed

if TYPE_CHECKING:
    from afd_async.teacher.gateway import TeacherGateway

__all__ = ["RunReport", "run_many"]

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    """Outcome counts of a pool of teacher-job workers: `run_many` and the teacher actor (`TeacherActor.run`)."""

    done: int = 0
    dead: int = 0
    deferred: int = 0
    failed: int = 0  # run_many only: the actor runs with exhausted="dead_letter" (and hands a failed prompt back)
    handed_back: int = 0
    bad_records: int = 0  # the actor only: queue records or prompt-file lines that did not decode (dead-lettered)
    errors: int = 0  # unexpected (e.g. Redis unreachable); the journal keeps such jobs resumable
    halted: Optional[str] = None


async def run_many(gateway: "TeacherGateway", prompts: AsyncIterable[JobRequest], concurrency: int, *,
                   drain_timeout_s: float = 60.0) -> RunReport:
    """Run jobs from `prompts` with `concurrency` workers until the source ends, `stop()`, or a halt.

    On stop, idle workers end at once, busy ones get `drain_timeout_s` to
    finish; then they are cancelled, which releases leases and claims and
    leaves each journal record resumable by id (or ambiguous mid-create).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    report = RunReport()
    it = prompts.__aiter__()
    lock = asyncio.Lock()
    busy: set[asyncio.Task[None]] = set()

    async def worker() -> None:
        me = asyncio.current_task()
        assert me is not None
        backoff = gateway.retry_initial_s
        while not gateway._stop.is_set() and gateway.halted is None:
            async with lock:
                try:
                    req = await it.__anext__()
                except StopAsyncIteration:
                    return
            busy.add(me)
            try:
                await gateway.run_job(req)
                report.done += 1
            except JobDeadLettered:
                report.dead += 1
            except JobDeferred:
                report.deferred += 1
            except JobFailed:
                report.failed += 1
            except GatewayHalted as e:
                report.halted = str(e)
                return
            except asyncio.CancelledError:
                report.handed_back += 1
                raise
            except Exception as e:  # noqa: BLE001 - one bad job must not kill the worker
                report.errors += 1
                log.error("teacher job failed unexpectedly: %s: %s", type(e).__name__, str(e)[:300])
                await asyncio.sleep(backoff)  # back off while e.g. Redis is unreachable
                backoff = min(backoff * 2, gateway.retry_max_s)
                continue
            finally:
                busy.discard(me)
            backoff = gateway.retry_initial_s

    tasks = [asyncio.create_task(worker(), name=f"teacher-worker-{i}") for i in range(concurrency)]
    stopper = asyncio.create_task(gateway._stop.wait())
    all_done = asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.wait([all_done, stopper], return_when=asyncio.FIRST_COMPLETED)
    if not all_done.done():
        for t in tasks:
            if t not in busy:
                t.cancel()  # idle: waiting for a prompt
        await asyncio.wait([all_done], timeout=drain_timeout_s)
        for t in tasks:
            t.cancel()
        await asyncio.wait([all_done], timeout=drain_timeout_s)
    stopper.cancel()
    if gateway.halted is not None and report.halted is None:
        report.halted = str(gateway.halted)
    return report
