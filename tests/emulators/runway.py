"""Emulator of Runway's task API (X-Runway-Version, THROTTLED, failureCode)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job

VERSION = "2024-11-06"

ERRORS: dict[ErrorClass, tuple[int, Any, dict[str, str]]] = {
    ErrorClass.RATE_LIMITED: (429, {"error": "Too many requests. Please slow down."}, {"Retry-After": "4"}),
    ErrorClass.TRANSIENT: (503, {"error": "Service temporarily unavailable"}, {}),
    ErrorClass.QUOTA_EXHAUSTED: (400, {"error": "You do not have enough credits to run this task."}, {}),
    ErrorClass.INVALID: (400, {"error": "Validation of body failed", "issues": [{"path": ["ratio"], "message": "Invalid enum value"}]}, {}),
}
DAILY_LIMIT = (429, {"error": "You have exceeded your daily task limit for this model."}, {})
_STATE = {"queued": "PENDING", "running": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED", "cancelled": "CANCELLED"}


class RunwayEmulator(Emulator):
    def routes(self) -> list[Route]:
        return [
            Route("/v1/text_to_video", self.create, methods=["POST"]),
            Route("/v1/image_to_video", self.create, methods=["POST"]),
            Route("/v1/tasks/{tid}", self.get, methods=["GET"]),
            Route("/v1/tasks/{tid}", self.delete, methods=["DELETE"]),
        ]

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("x-runway-version") != VERSION:
            return JSONResponse({"error": "X-Runway-Version header is missing or invalid"}, status_code=400)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": "Invalid API key"}, status_code=401)
        return None

    def _task(self, job: Job) -> dict[str, Any]:
        ahead = [j for j in self.jobs.values() if not j.terminal and j.id < job.id]
        throttled = self.max_inflight is not None and job.state == "queued" and len(ahead) >= self.max_inflight
        out: dict[str, Any] = {"id": job.id, "status": "THROTTLED" if throttled else _STATE[job.state], "createdAt": "2025-01-01T00:00:00Z"}
        if job.state == "running":
            out["progress"] = 0.5
        if job.state == "succeeded":
            out["output"] = [self.file_url(job)]
        if job.state == "failed":
            out["failure"] = "The prompt text was rejected by content moderation."
            out["failureCode"] = "SAFETY.INPUT.TEXT"
        return out

    async def create(self, request: Request) -> Response:
        if (f := self.fault("create", request) or self._auth(request)) is not None:
            return f
        body = await request.json()
        if not body.get("model") or not body.get("promptText"):
            return JSONResponse({"error": "model and promptText are required"}, status_code=400)
        job = await self.create_job(body["promptText"], body["model"], body)
        return JSONResponse({"id": job.id})

    async def get(self, request: Request) -> Response:
        if (f := self.fault("poll", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["tid"])
        if job is None:
            return JSONResponse({"error": "Task not found"}, status_code=404)
        task = self._task(job)
        if task["status"] != "THROTTLED":
            task = self._task(self.advance(job))
        return JSONResponse(task)

    async def delete(self, request: Request) -> Response:
        if (f := self.fault("cancel", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["tid"])
        if job is None:
            return JSONResponse({"error": "Task not found"}, status_code=404)
        if not job.terminal:
            job.state = "cancelled"
        return Response(status_code=204)
