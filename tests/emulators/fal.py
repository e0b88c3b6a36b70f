"""Emulator of fal's queue API (`queue.fal.run`): submit, status, response, cancel.

Where each rule comes from:

- Routes: `POST /{app}` (the app id may have a sub-path), `GET /{owner}/{alias}/requests/{id}/status`,
  `GET /{owner}/{alias}/requests/{id}`, `PUT /{owner}/{alias}/requests/{id}/cancel`: status,
  response and cancel drop the app's sub-path (https://docs.fal.ai/model-endpoints/queue;
  fal-client 1.0.3 `fal_client/client.py` `SyncClient.submit`, `SyncRequestHandle.from_request_id`).
  Auth: `Authorization: Key <FAL_KEY>` (`fal_client/auth.py`, `SyncClient._client`).
- Submit answers `{request_id, response_url, status_url, cancel_url}`, which the client follows
  as given (`SyncClient.submit`).
- `status` is one of `IN_QUEUE`, `IN_PROGRESS`, `COMPLETED` and nothing else: fal-client raises
  `ValueError("Unknown status")` on any other value (`_BaseRequestHandle._parse_status`;
  https://docs.fal.ai/documentation/model-apis/inference/queue, "Request Lifecycle").
- Every status reply carries `logs` (`null` unless asked for with `?logs=1`, then a list of
  `{message, level, source, timestamp}`): the client reads `data["logs"]` for IN_PROGRESS and
  COMPLETED (`_parse_status`). IN_QUEUE carries `queue_position` (read as `data["queue_position"]`);
  COMPLETED carries `metrics {inference_time}` (queue docs, "Check Status").
- A request that ended in an error is still COMPLETED, with `error` and `error_type`
  (`fal_client.Completed.error/error_type`); error types from
  https://docs.fal.ai/documentation/model-apis/request-errors. A cancelled request reads
  COMPLETED with `error_type: client_cancelled` (*unsure*: the docs say a queued request is
  removed, not what its status then shows; this is the documented type for a client's cancel).
- Cancel answers 202 `CANCELLATION_REQUESTED`, 400 `ALREADY_COMPLETED`, 404 `NOT_FOUND`
  (https://fal.ai/docs/inference-api/queue/cancel).
- A model's refusal is the response endpoint's 422 `{"detail": [{loc, msg, type}]}`; request
  errors are `{"detail": "...", "error_type": "..."}` (request-errors page).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job

APP = "fal-ai/kling-video/v2/master/text-to-video"
APP_ROOT = "fal-ai/kling-video"  # status/response/cancel URLs drop the app's sub-path
# Every `status` the queue returns, by emulator job state.
STATUSES = {"queued": "IN_QUEUE", "running": "IN_PROGRESS", "succeeded": "COMPLETED", "failed": "COMPLETED",
            "cancelled": "COMPLETED"}

ERRORS: dict[ErrorClass, tuple[int, Any, dict[str, str]]] = {
    ErrorClass.RATE_LIMITED: (429, {"detail": "Rate limit exceeded"}, {"Retry-After": "3"}),
    ErrorClass.CONCURRENCY_FULL: (429, {"detail": "Concurrent requests limit reached for this user"}, {}),
    ErrorClass.TRANSIENT: (503, {"detail": "Service unavailable", "error_type": "runner_scheduling_failure"}, {}),
    ErrorClass.QUOTA_EXHAUSTED: (403, {"detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."}, {}),
    ErrorClass.CONTENT_REJECTED: (422, {"detail": [{"loc": ["body", "prompt"], "msg": "The content could not be processed because it contained material flagged by a content checker.", "type": "content_policy_violation"}]}, {}),
    ErrorClass.INVALID: (422, {"detail": [{"loc": ["body", "duration"], "msg": "unexpected value; permitted: '5', '10'", "type": "value_error"}]}, {}),
}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


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

    def _logs(self, job: Job) -> list[dict[str, Any]]:
        if job.state == "queued":
            return []
        return [{"message": "Generating video", "level": "INFO", "source": "user", "timestamp": _iso(job.created_at)}]

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
        with_logs = request.query_params.get("logs", "").lower() in ("1", "true")
        out: dict[str, Any] = {"status": STATUSES[job.state], **self._urls(job), "logs": self._logs(job) if with_logs else None}
        if job.state == "queued":
            out["queue_position"] = 0
        if out["status"] == "COMPLETED":
            out["metrics"] = {"inference_time": 41.5} if job.state != "cancelled" else {}
        if job.state == "cancelled":
            out.update(error="Request was cancelled by the client", error_type="client_cancelled")
        return JSONResponse(out)

    async def response(self, request: Request) -> Response:
        if (f := self.fault("response", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["rid"])
        if job is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        if job.state == "failed":
            return JSONResponse(ERRORS[ErrorClass.CONTENT_REJECTED][1], status_code=422)
        if job.state == "cancelled":
            return JSONResponse({"detail": "Request was cancelled by the client", "error_type": "client_cancelled"},
                                status_code=499, headers={"X-Fal-Error-Type": "client_cancelled"})
        if job.state != "succeeded":
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        return JSONResponse({"video": {"url": self.file_url(job), "content_type": "video/mp4", "file_name": f"{job.id}.mp4",
                                       "file_size": len(self.file_bytes)}, "seed": job.body.get("seed")})

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
