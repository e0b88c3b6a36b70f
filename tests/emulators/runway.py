"""Emulator of Runway's task API (`api.dev.runwayml.com`, `X-Runway-Version: 2024-11-06`).

Where each rule comes from:

- Routes: `POST /v1/text_to_video`, `POST /v1/image_to_video` → `{id, estimatedCost {credits}}`
  (`runwayml/types/text_to_video_create_response.py`); `GET /v1/tasks/{id}`;
  `DELETE /v1/tasks/{id}` (cancels a running task, deletes a finished one; 204)
  (https://docs.dev.runwayml.com/api/; runwayml 5.24 `runwayml/resources/text_to_video.py`,
  `image_to_video.py`, `tasks.py`). Every request carries `X-Runway-Version` and
  `Authorization: Bearer <key>` (`runwayml/_client.py` `default_headers`, `auth_headers`).
- The task object is a union on `status` (`runwayml/types/task_retrieve_response.py`):
  `PENDING`, `THROTTLED`, `RUNNING` carry `estimatedCost {credits: float}` (`RUNNING` also a
  required `progress` in [0, 1]); `SUCCEEDED` (`output: [url]`), `FAILED` (`failure`,
  `failureCode`) and `CANCELLED` carry the final `cost {credits: int}` (0 when refunded). Every
  status has `id` and `createdAt` (ISO 8601, when the task was submitted).
- `THROTTLED`: queued behind the account's concurrency limit (the SDK type's docstring);
  `failureCode` values from https://docs.dev.runwayml.com/errors/task-failures/ (the URL the
  SDK's `Failed.failure_code` docstring names).
- HTTP errors are `{"error": "..."}` with the statuses of https://docs.dev.runwayml.com/api-details/errors.
- The emulated price (`CREDITS_PER_SECOND`) is made up; refunds of failed and cancelled tasks follow
  the SDK's `cost` docstring ("fully refunded tasks report 0").
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job

VERSION = "2024-11-06"
CREDITS_PER_SECOND = 25  # the emulated price; a task's credits are this times its `duration`

ERRORS: dict[ErrorClass, tuple[int, Any, dict[str, str]]] = {
    ErrorClass.RATE_LIMITED: (429, {"error": "Too many requests. Please slow down."}, {"Retry-After": "4"}),
    ErrorClass.TRANSIENT: (503, {"error": "Service temporarily unavailable"}, {}),
    ErrorClass.QUOTA_EXHAUSTED: (400, {"error": "You do not have enough credits to run this task."}, {}),
    ErrorClass.INVALID: (400, {"error": "Validation of body failed", "issues": [{"path": ["ratio"], "message": "Invalid enum value"}]}, {}),
}
DAILY_LIMIT = (429, {"error": "You have exceeded your daily task limit for this model."}, {})
# Every task `status` the API returns but THROTTLED, by emulator job state.
STATUSES = {"queued": "PENDING", "running": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED", "cancelled": "CANCELLED"}


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
        created = datetime.fromtimestamp(job.created_at, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        credits = self._credits(job)
        out: dict[str, Any] = {"id": job.id, "status": "THROTTLED" if throttled else STATUSES[job.state], "createdAt": created}
        if not job.terminal:
            out["estimatedCost"] = {"credits": float(credits)}
        if job.state == "running":
            out["progress"] = 0.5
        if job.state == "succeeded":
            out["output"] = [self.file_url(job)]
        if job.state == "failed":
            out["failure"] = "The prompt text was rejected by content moderation."
            out["failureCode"] = "SAFETY.INPUT.TEXT"
        if job.terminal:
            out["cost"] = {"credits": credits if job.state == "succeeded" else 0}  # failed and cancelled tasks are refunded
        return out

    @staticmethod
    def _credits(job: Job) -> int:
        return CREDITS_PER_SECOND * int(job.body.get("duration") or 5)

    async def create(self, request: Request) -> Response:
        if (f := self.fault("create", request) or self._auth(request)) is not None:
            return f
        body = await request.json()
        if not body.get("model") or not body.get("promptText"):
            return JSONResponse({"error": "model and promptText are required"}, status_code=400)
        job = await self.create_job(body["promptText"], body["model"], body)
        return JSONResponse({"id": job.id, "estimatedCost": {"credits": float(self._credits(job))}})

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
