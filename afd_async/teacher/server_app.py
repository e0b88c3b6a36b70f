"""HTTP handlers of the local teacher server: auth, limits, faults, job routes.

The order of checks on a create mirrors a real provider's front door:
auth (401) -> request body (400) -> injected request faults -> idempotent
replay (free) -> create-rate bucket (429 `rate_limit`) -> per-key in-flight
cap (429 `concurrency_limit`) -> global queue cap (503 `overloaded`) -> job.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from afd_async.teacher.server_faults import FaultMarkerError, parse_markers
from afd_async.teacher.server_jobs import Job, JobQueue, TokenBucket

__all__ = ["Handlers", "auth_digests"]

_SIZE = re.compile(r"^(\d{1,4})x(\d{1,4})$")
_MAX_BODY = 64 * 1024
_MAX_PIXELS = 1920 * 1080
_MAX_FRAMES = 2000


def auth_digests(keys: Sequence[str]) -> list[bytes]:
    """SHA-256 of each key: compared in constant time, equal length whatever the key."""
    return [hashlib.sha256(k.encode()).digest() for k in keys]


def _error(status: int, code: str, message: str, kind: str = "invalid_request_error",
           headers: Optional[dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "type": kind, "message": message, "param": None}},
                        status_code=status, headers=headers)


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
        with self.queue.lock:
            job = self.queue.jobs.get(request.path_params["video_id"])
            if job is None or job.owner != owner:
                return None
            self.queue.refresh(job)
            return job

    def _video(self, job: Job) -> dict[str, Any]:
        p = job.params
        return {
            "id": job.id, "object": "video", "status": job.status, "model": job.model, "prompt": job.prompt,
            "seed": job.seed, "progress": self.queue.progress(job), "created_at": int(job.created_at),
            "completed_at": None if job.completed_at is None else int(job.completed_at),
            "expires_at": None if job.expires_at is None else int(math.ceil(job.expires_at)),
            "seconds": None if p.get("seconds") is None else str(p["seconds"]),
            "size": None if p.get("width") is None else f"{p['width']}x{p['height']}",
            "error": job.error,
        }

    @staticmethod
    def _params(body: dict[str, Any]) -> dict[str, Any]:
        """Validated render params from the create body; raises ValueError with the reason."""
        params: dict[str, Any] = {"model": str(body.get("model") or ""), "seconds": None, "fps": None,
                                  "width": None, "height": None}
        if body.get("seconds") is not None:
            params["seconds"] = float(body["seconds"])
            if not 0.0 < params["seconds"] <= 60.0:
                raise ValueError("seconds must be in (0, 60]")
        if body.get("fps") is not None:
            params["fps"] = float(body["fps"])
            if not 0.0 < params["fps"] <= 120.0:
                raise ValueError("fps must be in (0, 120]")
        if body.get("size") is not None:
            match = _SIZE.match(str(body["size"]))
            if not match:
                raise ValueError("size must look like '1280x720' (width x height)")
            params["width"], params["height"] = int(match.group(1)), int(match.group(2))
            if min(params["width"], params["height"]) < 8 or params["width"] * params["height"] > _MAX_PIXELS:
                raise ValueError(f"size must be at least 8x8 and at most {_MAX_PIXELS} pixels")
        if (params["seconds"] or 0) * (params["fps"] or 0) > _MAX_FRAMES:
            raise ValueError(f"seconds x fps must be at most {_MAX_FRAMES} frames")
        return params

    # -- routes --------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        owner = self._owner(request)
        if owner is None:
            return self._unauthorized()
        self.counters["creates_total"] += 1
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            return _error(413, "invalid_request", f"request body larger than {_MAX_BODY} bytes")
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            prompt = body.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 4000:
                raise ValueError("prompt must be a non-empty string of at most 4000 characters")
            seed = int(body.get("seed", 0) or 0)
            params = self._params(body)
            render_prompt, markers = parse_markers(prompt)
        except FaultMarkerError as exc:
            return _error(400, "invalid_request", str(exc))
        except (ValueError, TypeError) as exc:
            return _error(400, "invalid_request", f"invalid request: {exc}")
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
        job = self.queue.new_job(owner=owner, prompt=prompt, render_prompt=render_prompt,
                                 model=params.pop("model"), seed=seed, params=params, markers=markers,
                                 idempotency_key=idem)
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
        job, refused = await self._job_request(request)
        if refused is not None:
            return refused
        with self.queue.lock:
            status, data = job.status, job.result
            if status == "expired" or (status == "completed" and job.fault == "expired_url"):
                return _error(410, "expired", "the video has expired; its content is no longer available")
            if status != "completed" or data is None:
                return _error(409, "invalid_state", f"the video is {status}, content is available once completed")
            self.queue.counts["downloads"] += 1
            job.downloads += 1
        return Response(data, media_type="video/mp4")

    async def cancel(self, request: Request) -> Response:
        job, refused = await self._job_request(request)
        if refused is not None:
            return refused
        if not self.queue.cancel(job):
            return _error(409, "invalid_state", f"the video is already {job.status}")
        with self.queue.lock:
            return JSONResponse(self._video(job))

    async def list_jobs(self, request: Request) -> Response:
        owner = self._owner(request)
        if owner is None:
            return self._unauthorized()
        try:
            limit = min(100, max(1, int(request.query_params.get("limit", "20"))))
        except ValueError:
            return _error(400, "invalid_request", "limit must be an integer")
        descending = request.query_params.get("order", "desc") != "asc"
        with self.queue.lock:
            jobs = sorted((j for j in self.queue.jobs.values() if j.owner == owner), key=lambda j: j.seq,
                          reverse=descending)
            for j in jobs[:limit]:
                self.queue.refresh(j)
            data = [self._video(j) for j in jobs[:limit]]
        return JSONResponse({"object": "list", "data": data, "has_more": len(jobs) > limit})

    async def job_ledger(self, request: Request) -> Response:
        """Every job of the caller's key with its content-fetch count: the fault ledger's ground truth
        for "created twice" and "orphaned" (`afd_async.faults.ledger`). Jobs are forgotten an hour after they end."""
        owner = self._owner(request)
        if owner is None:
            return self._unauthorized()
        with self.queue.lock:
            data = [{"id": j.id, "prompt": j.prompt, "seed": j.seed, "model": j.model, "status": j.status,
                     "downloads": j.downloads, "created_at": j.created_at}
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
