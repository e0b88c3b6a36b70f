"""HTTP handlers of the local teacher server: auth, limits, faults, job routes.

The order of checks on a create mirrors a real provider's front door:
auth (401) -> request body (400) -> injected request faults -> idempotent
replay (free) -> create-rate bucket (429 `rate_limit`) -> per-key in-flight
cap (429 `concurrency_limit`) -> global queue cap (503 `overloaded`) -> job.
Bodies, objects and pages are the OpenAI Videos wire format (`server_wire`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from afd_async.teacher.server_faults import FaultMarkerError, parse_markers
from afd_async.teacher.server_jobs import Job, JobQueue, TokenBucket
from afd_async.teacher.server_wire import (MAX_BODY, VARIANTS, VideoDefaults, WireError, error_response,
                                           parse_create, parse_list_query, read_create_body, video_object)

__all__ = ["Handlers", "auth_digests"]

_error = error_response


def auth_digests(keys: Sequence[str]) -> list[bytes]:
    """SHA-256 of each key: compared in constant time, equal length whatever the key."""
    return [hashlib.sha256(k.encode()).digest() for k in keys]


def _retry_headers(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds))), "retry-after-ms": str(max(1, int(seconds * 1000)))}


@dataclass
class Handlers:
    """Route handlers bound to one job queue, key set and limits."""

    queue: JobQueue
    keys: list[bytes]
    buckets: list[TokenBucket]
    rate_per_min: float
    max_in_flight: int
    max_queued: int
    defaults: VideoDefaults = field(default_factory=VideoDefaults)
    webhooks: bool = False  # the server has a signing secret, so a create may carry `webhook`
    counters: dict[str, Any] = field(default_factory=lambda: {
        "creates_total": 0, "creates_accepted": 0, "idempotent_replays": 0, "auth_failures": 0,
        "throttled": {"rate_limit": 0, "concurrency_limit": 0, "queue_full": 0},
    })
    started_at: float = field(default_factory=time.time)

    # -- helpers -------------------------------------------------------------

    def _owner(self, request: Request) -> Optional[int]:
        """Index of the presented key, or None; every key is compared (no early exit)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        digest = hashlib.sha256(token.strip().encode()).digest()
        found: Optional[int] = None
        for i, key in enumerate(self.keys):
            if hmac.compare_digest(digest, key) and scheme.lower() == "bearer" and token.strip():
                found = i
        if found is None:
            self.counters["auth_failures"] += 1
        return found

    @staticmethod
    def _unauthorized() -> JSONResponse:
        return _error(401, "invalid_api_key", "missing or invalid API key (use 'Authorization: Bearer <key>')",
                      "authentication_error", {"WWW-Authenticate": "Bearer"})

    def _ratelimit_headers(self, owner: int) -> dict[str, str]:
        bucket = self.buckets[owner]
        return {"x-ratelimit-limit-requests": str(int(self.rate_per_min)),
                "x-ratelimit-remaining-requests": str(bucket.remaining()),
                "x-ratelimit-reset-requests": f"{bucket.reset_s():.3f}s"}

    async def _request_fault(self, *, create: bool, prompt: str = "",
                             markers: Optional[dict[str, Optional[int]]] = None) -> Optional[Response]:
        fault = self.queue.injector.request_fault(create=create, prompt=prompt, markers=markers)
        if fault == "hang":
            await asyncio.sleep(self.queue.injector.config.hang_s)
            return _error(504, "timeout", "upstream render service timed out", "server_error")
        if fault == "server_error":
            return _error(500, "server_error", "injected internal server error", "server_error")
        if fault == "rate_limit":
            self.counters["throttled"]["rate_limit"] += 1
            return _error(429, "rate_limit", "rate limit reached for video creates", "rate_limit_error",
                          _retry_headers(self.queue.injector.config.retry_after_s))
        return None

    def _job_or_404(self, request: Request, owner: int) -> Optional[Job]:
        """The caller's own, undeleted job named in the path (a deleted job is gone, as in the API)."""
        with self.queue.lock:
            job = self.queue.jobs.get(request.path_params["video_id"])
            if job is None or job.owner != owner or job.deleted:
                return None
            self.queue.refresh(job)
            return job

    def _video(self, job: Job) -> dict[str, Any]:
        return video_object(job, self.queue.progress(job))

    # -- routes --------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        owner = self._owner(request)
        if owner is None:
            return self._unauthorized()
        self.counters["creates_total"] += 1
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _error(413, "invalid_request", f"request body larger than {MAX_BODY} bytes")
        try:
            wanted = parse_create(await read_create_body(request), self.defaults)
            prompt = wanted.prompt
            render_prompt, markers = parse_markers(prompt)
        except FaultMarkerError as exc:
            return _error(400, "invalid_request", str(exc), param="prompt")
        except WireError as exc:
            return _error(400, "invalid_request", f"invalid request: {exc}", param=exc.param)
        if wanted.webhook and not self.webhooks:
            return _error(400, "invalid_request", "webhook: this server has no webhook signing secret "
                          "(start it with AFD_TEACHER_WEBHOOK_SECRET set)", param="webhook")
        faulted = await self._request_fault(create=True, prompt=prompt, markers=markers)
        if faulted is not None:
            return faulted
        idem = request.headers.get("idempotency-key")
        with self.queue.lock:
            existing = self.queue.jobs.get(self.queue.idempotency.get((owner, idem), "")) if idem else None
            if existing is not None:
                self.counters["idempotent_replays"] += 1
                return JSONResponse(self._video(existing), headers=self._ratelimit_headers(owner))
            bucket = self.buckets[owner]
            if not bucket.try_take():
                self.counters["throttled"]["rate_limit"] += 1
                return _error(429, "rate_limit", f"rate limit of {self.rate_per_min:g} video creates per minute "
                              "reached", "rate_limit_error",
                              {**_retry_headers(bucket.retry_after_s()), **self._ratelimit_headers(owner)})
            if self.queue.active_count(owner=owner) >= self.max_in_flight:
                self.counters["throttled"]["concurrency_limit"] += 1
                return _error(429, "concurrency_limit", f"at most {self.max_in_flight} jobs in flight per key; "
                              "wait for one to finish", "rate_limit_error", _retry_headers(1.0))
            if self.queue.active_count(status="queued") >= self.max_queued:
                self.counters["throttled"]["queue_full"] += 1
                return _error(503, "overloaded", "the render queue is full; retry later", "server_error",
                              _retry_headers(1.0))
        self.queue.sweep()
        job = self.queue.new_job(owner=owner, prompt=prompt, render_prompt=render_prompt, model=wanted.model,
                                 seed=wanted.seed, params=wanted.render_params(), markers=markers,
                                 idempotency_key=idem, webhook=wanted.webhook)
        self.counters["creates_accepted"] += 1
        with self.queue.lock:
            video = self._video(job)
        self.queue.start(job)
        return JSONResponse(video, headers=self._ratelimit_headers(owner))

    async def _job_request(self, request: Request) -> tuple[Any, Optional[Response]]:
        """The preamble of every per-job route: auth, injected request faults, the caller's own job."""
        owner = self._owner(request)
        if owner is None:
            return None, self._unauthorized()
        faulted = await self._request_fault(create=False)
        if faulted is not None:
            return None, faulted
        job = self._job_or_404(request, owner)
        if job is None:
            return None, _error(404, "not_found", "no such video")
        return job, None

    async def retrieve(self, request: Request) -> Response:
        job, refused = await self._job_request(request)
        if refused is not None:
            return refused
        with self.queue.lock:
            return JSONResponse(self._video(job))

    async def content(self, request: Request) -> Response:
        """`?variant=video|thumbnail|spritesheet`: the MP4 (default), a WebP thumbnail or a JPEG spritesheet."""
        variant = request.query_params.get("variant", "video")
        if variant not in VARIANTS:
            return _error(400, "invalid_value", f"variant must be one of {sorted(VARIANTS)}, got {variant[:40]!r}",
                          param="variant")
        job, refused = await self._job_request(request)
        if refused is not None:
            return refused
        with self.queue.lock:
            if job.status == "completed" and (job.expired or job.fault == "expired_url"):
                return _error(410, "expired", "the video has expired; its content is no longer available")
            data = job.result if variant == "video" else job.previews.get(variant)
            if job.status != "completed" or data is None:
                return _error(409, "invalid_state",
                              f"the video is {job.status}, content is available once completed")
            if variant == "video":
                self.queue.counts["downloads"] += 1
                job.downloads += 1
        return Response(data, media_type=VARIANTS[variant])

    async def delete(self, request: Request) -> Response:
        """Delete the video and its files (a queued or rendering one is cancelled first: `JobQueue.delete`)."""
        job, refused = await self._job_request(request)
        if refused is not None:
            return refused
        self.queue.delete(job)
        return JSONResponse({"id": job.id, "object": "video.deleted", "deleted": True})

    async def list_jobs(self, request: Request) -> Response:
        """One page of the caller's videos by creation time; `after` is the last id of the previous page."""
        owner = self._owner(request)
        if owner is None:
            return self._unauthorized()
        try:
            after, limit, order = parse_list_query(request.query_params)
        except WireError as exc:
            return _error(400, "invalid_request", str(exc), param=exc.param)
        descending = order == "desc"
        with self.queue.lock:
            cursor = self.queue.jobs.get(after) if after else None  # a deleted job still marks its place
            if after and (cursor is None or cursor.owner != owner):
                return _error(400, "invalid_request", f"after: no video {after[:80]!r}", param="after")
            jobs = sorted((j for j in self.queue.jobs.values() if j.owner == owner and not j.deleted
                           and (cursor is None or (j.seq < cursor.seq if descending else j.seq > cursor.seq))),
                          key=lambda j: j.seq, reverse=descending)
            page = jobs[:limit]
            for j in page:
                self.queue.refresh(j)
            data = [self._video(j) for j in page]
        return JSONResponse({"object": "list", "data": data, "first_id": page[0].id if page else None,
                             "last_id": page[-1].id if page else None, "has_more": len(jobs) > limit})

    async def job_ledger(self, request: Request) -> Response:
        """Every job of the caller's key with its content-fetch count: the fault ledger's ground truth
        for "created twice" and "orphaned" (`afd_async.faults.ledger`). Deleted jobs are listed too
        (`deleted: true`; one deleted while live reads `cancelled`, a status only this admin route shows).
        Jobs are forgotten an hour after they end."""
        owner = self._owner(request)
        if owner is None:
            return self._unauthorized()
        with self.queue.lock:
            data = [{"id": j.id, "prompt": j.prompt, "seed": j.seed, "model": j.model, "status": j.status,
                     "deleted": j.deleted, "downloads": j.downloads, "created_at": j.created_at}
                    for j in sorted(self.queue.jobs.values(), key=lambda j: j.seq) if j.owner == owner]
        return JSONResponse({"object": "list", "data": data})

    async def stats(self, request: Request) -> Response:
        if self._owner(request) is None:
            return self._unauthorized()
        self.queue.sweep()
        with self.queue.lock:
            body = {
                **{k: (dict(v) if isinstance(v, dict) else v) for k, v in self.counters.items()},
                "throttled_total": sum(self.counters["throttled"].values()),
                "jobs": dict(self.queue.counts),
                "queued": self.queue.active_count(status="queued"),
                "in_progress": self.queue.active_count(status="in_progress"),
                "faults_injected": dict(self.queue.injector.injected),
                "uptime_s": time.time() - self.started_at,
            }
        return JSONResponse(body)
