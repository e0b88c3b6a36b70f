"""Job state, the render pool and the create-rate bucket of the local teacher server.

Jobs live in memory. Rendering runs in a thread pool so the server's event
loop keeps answering polls while a backend works; every state change happens
under one lock, and each job moves only forward:

    queued -> in_progress -> completed
       \\            \\-> failed
        \\-> cancelled (from queued or in_progress, by a delete)

`status` only ever shows the API's four values (queued, in_progress, completed,
failed) on the wire: `cancelled` is internal, reached only by deleting a live
job, and a deleted job answers 404 (it stays in `jobs` for the admin ledger
until forgotten). A job takes at least `render_latency_s` (a real provider takes
minutes; the wait is interruptible by a delete), and its MP4 and previews are
kept for `result_ttl_s` after completion, then freed: the job still reads
`completed` (its `expires_at` has passed) and its content answers 410.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from afd_async.teacher.server_faults import FaultInjector, corrupt_mp4, decode_bomb, distort_clip, pad_mp4, truncate_mp4
from afd_async.teacher.server_previews import previews
from afd_async.video.clip import Clip
from afd_async.video.codec import encode_mp4

__all__ = ["Backend", "Job", "JobQueue", "TokenBucket"]

Backend = Callable[[str, int, dict], Clip]
ACTIVE = ("queued", "in_progress")
_FORGET_AFTER_S = 3600.0  # terminal job records are dropped this long after they stop mattering


class TokenBucket:
    """Create-rate limiter: `rate_per_min` tokens a minute, at most `burst` stored.

    A create takes one token; with none left the caller answers 429 and
    `retry_after_s()` says when the next token arrives.
    """

    def __init__(self, rate_per_min: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_min <= 0 or burst < 1:
            raise ValueError(f"need rate_per_min > 0 and burst >= 1, got {rate_per_min}, {burst}")
        self.rate_per_s, self.burst, self._clock = rate_per_min / 60.0, float(burst), clock
        self._tokens, self._t = float(burst), clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate_per_s)
        self._t = now

    def try_take(self) -> bool:
        """Take one token if there is one."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def remaining(self) -> int:
        self._refill()
        return int(self._tokens)

    def retry_after_s(self) -> float:
        """Seconds until one token is available (0 if one is)."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate_per_s)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        self._refill()
        return max(0.0, (self.burst - self._tokens) / self.rate_per_s)


@dataclass
class Job:
    """One video job; mutated only under `JobQueue.lock`."""

    id: str
    seq: int
    owner: int  # index of the API key, never the key itself
    prompt: str  # as submitted (markers included), shown to clients
    render_prompt: str  # markers stripped: what the backend sees
    model: str
    seed: int
    params: dict[str, Any]
    fault: Optional[str]
    created_at: float
    status: str = "queued"
    started_at: Optional[float] = None
    completed_at: Optional[float] = None
    expires_at: Optional[float] = None
    error: Optional[dict[str, str]] = None
    result: Optional[bytes] = None
    previews: dict[str, bytes] = field(default_factory=dict)  # content variants besides the MP4 (server_previews)
    expired: bool = False  # the result and previews were freed at `expires_at`
    deleted: bool = False  # DELETE /v1/videos/{id}: gone from the API, kept for the admin ledger
    idempotency_key: Optional[str] = None
    webhook: Optional[str] = None  # URL that gets the signed completion event (`server_webhooks`)
    downloads: int = 0  # content fetches of this job (the fault ledger's "orphaned": created, never fetched)
    cancel_event: threading.Event = field(default_factory=threading.Event)


class JobQueue:
    """In-memory jobs, a render pool, TTLs and counters."""

    def __init__(
        self,
        *,
        backend: Backend,
        injector: FaultInjector,
        render_workers: int,
        render_latency_s: float,
        result_ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend, self.injector = backend, injector
        # Runs in the render thread after a job with a webhook completes or fails (outside the lock), so
        # the event leaves the moment the slot frees; set by `create_app` (`WebhookSender.hook`).
        self.on_end: Optional[Callable[[Job], None]] = None
        self.render_latency_s, self.result_ttl_s, self.clock = render_latency_s, result_ttl_s, clock
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.idempotency: dict[tuple[int, str], str] = {}
        self.counts: dict[str, int] = {k: 0 for k in ("completed", "failed", "cancelled", "expired", "deleted",
                                                     "downloads")}
        self._seq = 0
        self._pool = ThreadPoolExecutor(max_workers=render_workers, thread_name_prefix="teacher-render")

    def new_job(self, *, owner: int, prompt: str, render_prompt: str, model: str, seed: int,
                params: dict[str, Any], markers: dict[str, Optional[int]], idempotency_key: Optional[str],
                webhook: Optional[str] = None) -> Job:
        """Create and store a queued job (the caller checked the limits); `start` enqueues it."""
        with self.lock:
            self._seq += 1
            seq = self._seq
        fault = self.injector.job_fault(seq, markers)
        job = Job(id=f"video_{uuid.uuid4().hex}", seq=seq, owner=owner, prompt=prompt, render_prompt=render_prompt,
                  model=model, seed=seed, params=params, fault=fault, created_at=self.clock(),
                  idempotency_key=idempotency_key, webhook=webhook)
        with self.lock:
            self.jobs[job.id] = job
            if idempotency_key:
                self.idempotency[(owner, idempotency_key)] = job.id
        return job

    def start(self, job: Job) -> None:
        """Hand a job to the render pool (after the create response is built, so it reads `queued`)."""
        self._pool.submit(self._run, job)

    def active_count(self, owner: Optional[int] = None, status: Optional[str] = None) -> int:
        """Jobs not yet terminal (of one owner and/or in one state); call under `lock`."""
        return sum(1 for j in self.jobs.values()
                   if j.status in ACTIVE and (owner is None or j.owner == owner) and (status in (None, j.status)))

    def refresh(self, job: Job) -> None:
        """Free a completed job's files past its TTL (it stays `completed`); call under `lock`."""
        if job.status == "completed" and not job.expired and job.expires_at is not None \
                and self.clock() >= job.expires_at:
            job.expired, job.result, job.previews = True, None, {}
            self.counts["expired"] += 1

    def sweep(self) -> None:
        """Expire results past their TTL and forget long-dead jobs (bounded memory)."""
        now = self.clock()
        with self.lock:
            for job in list(self.jobs.values()):
                self.refresh(job)
                end = job.expires_at or job.completed_at
                if job.status not in ACTIVE and end is not None and now - end > _FORGET_AFTER_S:
                    del self.jobs[job.id]
                    if job.idempotency_key:
                        self.idempotency.pop((job.owner, job.idempotency_key), None)

    def progress(self, job: Job) -> int:
        """0-100; in progress it tracks the elapsed share of the render latency (capped at 99)."""
        if job.status == "completed":
            return 100
        if job.status != "in_progress" or job.started_at is None:
            return 0
        if self.render_latency_s <= 0:
            return 50
        return min(99, int(100 * (self.clock() - job.started_at) / self.render_latency_s))

    def delete(self, job: Job) -> None:
        """Delete a job: free its files, forget its idempotency key; a live one is cancelled first.

        The API reference documents delete for completed and failed videos ("Permanently
        delete a completed or failed video and its stored assets") and says nothing of
        queued or in-progress ones: for those this server stops the render, then deletes
        (its own choice, undocumented by the API). A create that repeats the deleted
        job's idempotency key makes a new job.
        """
        with self.lock:
            if job.deleted:
                return
            if job.status in ACTIVE:
                job.status, job.completed_at = "cancelled", self.clock()
                self.counts["cancelled"] += 1
            job.deleted, job.result, job.previews = True, None, {}
            self.counts["deleted"] += 1
            if job.idempotency_key and self.idempotency.get((job.owner, job.idempotency_key)) == job.id:
                del self.idempotency[(job.owner, job.idempotency_key)]
        job.cancel_event.set()

    def _finish(self, job: Job, status: str, *, error: Optional[dict[str, str]] = None,
                result: Optional[bytes] = None, images: Optional[dict[str, bytes]] = None) -> None:
        with self.lock:
            if job.status != "in_progress":  # deleted meanwhile: the delete wins
                return
            now = self.clock()
            job.status, job.error, job.result, job.completed_at = status, error, result, now
            job.previews = dict(images or {})
            if status == "completed":
                job.expires_at = now + self.result_ttl_s
            self.counts[status] += 1
        if self.on_end is not None and job.webhook:
            self.on_end(job)

    def _run(self, job: Job) -> None:
        """Render one job in a pool thread."""
        with self.lock:
            if job.status != "queued":
                return
            job.status, job.started_at = "in_progress", self.clock()
        started = time.monotonic()
        try:
            if job.fault == "content_policy":
                self._finish(job, "failed", error={"code": "content_policy",
                                                   "message": "the prompt was rejected by the content policy"})
                return
            clip = distort_clip(self.backend(job.render_prompt, job.seed, dict(job.params)), job.fault)
            data, images = encode_mp4(clip), previews(clip)
            if job.fault == "truncated_mp4":
                data = truncate_mp4(data, job.seq)
            elif job.fault == "corrupt_mp4":
                data = corrupt_mp4(data, job.seq)
            elif job.fault == "decode_bomb":
                data = decode_bomb()
            elif job.fault == "oversized":
                data = pad_mp4(data)
        except ValueError as exc:  # e.g. physics PromptError: the request, not the server, is wrong
            self._finish(job, "failed", error={"code": "invalid_request", "message": str(exc)[:500]})
            return
        except Exception as exc:  # noqa: BLE001 - a backend crash fails the job, not the server
            self._finish(job, "failed", error={"code": "generation_failed",
                                               "message": f"{type(exc).__name__}: {str(exc)[:300]}"})
            return
        remaining = self.render_latency_s - (time.monotonic() - started)
        if remaining > 0 and job.cancel_event.wait(remaining):
            return
        self._finish(job, "completed", result=data, images=images)

    def close(self) -> None:
        """Cancel everything pending and stop the pool without waiting for running renders."""
        with self.lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            job.cancel_event.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
