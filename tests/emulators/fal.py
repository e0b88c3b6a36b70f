"""Emulator of fal's queue API (queue.fal.run): submit, status, response, cancel."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job

APP = "fal-ai/kling-video/v2/master/text-to-video"
APP_ROOT = "fal-ai/kling-video"  # status/response/cancel URLs drop the app's sub-path

ERRORS: dict[ErrorClass, tuple[int, Any, dict[str, str]]] = {
    ErrorClass.RATE_LIMITED: (429, {"detail": "Rate limit exceeded"}, {"Retry-After": "3"}),
    ErrorClass.CONCURRENCY_FULL: (429, {"detail": "Concurrent requests limit reached for this user"}, {}),
    ErrorClass.TRANSIENT: (503, {"detail": "Service unavailable"}, {}),
    ErrorClass.QUOTA_EXHAUSTED: (403, {"detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."}, {}),
    ErrorClass.CONTENT_REJECTED: (422, {"detail": [{"loc": ["body", "prompt"], "msg": "The content could not be processed because it contained material flagged by a content checker.", "type": "content_policy_violation"}]}, {}),
    ErrorClass.INVALID: (422, {"detail": [{"loc": ["body", "duration"], "msg": "unexpected value; permitted: '5', '10'", "type": "value_error"}]}, {}),
}


class FalEmulator(Emulator):
    def routes(self) -> list[Route]:
        return [
            Route(f"/{APP_ROOT}/requests/{{rid}}/status", self.status, methods=["GET"]),
            Route(f"/{APP_ROOT}/requests/{{rid}}/cancel", self.cancel, methods=["PUT"]),
            Route(f"/{APP_ROOT}/requests/{{rid}}", self.response, methods=["GET"]),
            Route("/{app:path}", self.submit, methods=["POST"]),
        ]

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Key {self.api_key}":
            return JSONResponse({"detail": "Unauthorized: invalid key"}, status_code=401)
        return None

    def _urls(self, job: Job) -> dict[str, str]:
        root = f"{self.url}/{APP_ROOT}/requests/{job.id}"
        return {"request_id": job.id, "status_url": f"{root}/status", "response_url": root, "cancel_url": f"{root}/cancel"}

    async def submit(self, request: Request) -> Response:
        if (f := self.fault("create", request) or self._auth(request)) is not None:
            return f
        if request.path_params["app"] != APP:
            return JSONResponse({"detail": "Application not found"}, status_code=404)
        body = await request.json()
        if self.max_inflight is not None and self.inflight() >= self.max_inflight:
            return JSONResponse({"detail": "Concurrent requests limit reached for this user"}, status_code=429)
        job = await self.create_job(body.get("prompt", ""), APP, body)
        return JSONResponse(self._urls(job))

    async def status(self, request: Request) -> Response:
        if (f := self.fault("poll", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["rid"])
        if job is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        self.advance(job)
        state = {"queued": "IN_QUEUE", "running": "IN_PROGRESS", "cancelled": "CANCELED"}.get(job.state, "COMPLETED")
        out: dict[str, Any] = {"status": state, **self._urls(job)}
        if state == "IN_QUEUE":
            out["queue_position"] = 0
        return JSONResponse(out)

    async def response(self, request: Request) -> Response:
        if (f := self.fault("response", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["rid"])
        if job is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        if job.state == "failed":
            return JSONResponse(ERRORS[ErrorClass.CONTENT_REJECTED][1], status_code=422)
        if job.state != "succeeded":
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        return JSONResponse({"video": {"url": self.file_url(job), "content_type": "video/mp4", "file_size": len(self.file_bytes)}, "seed": job.body.get("seed")})

    async def cancel(self, request: Request) -> Response:
        if (f := self.fault("cancel", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["rid"])
        if job is None:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        if job.terminal:
            return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
        job.state = "cancelled"
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)
