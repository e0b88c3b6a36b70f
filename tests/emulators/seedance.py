"""Emulator of the Ark / ModelArk `contents/generations/tasks` API (Seedance)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job

PREFIX = "/api/v3"
QUEUE_CAP = 120


def _err(code: str, message: str, kind: str = "BadRequest") -> dict[str, Any]:
    return {"error": {"code": code, "message": f"{message} Request id: emu", "param": "", "type": kind}}


QUEUE_FULL = (429, _err("SetLimitExceeded", f"The number of queued tasks has reached the limit of {QUEUE_CAP}.", "TooManyRequests"), {})
ERRORS: dict[ErrorClass, tuple[int, Any, dict[str, str]]] = {
    ErrorClass.RATE_LIMITED: (429, _err("RateLimitExceeded.EndpointRPMExceeded", "The request has exceeded the RPM limit.", "TooManyRequests"), {"Retry-After": "10"}),
    ErrorClass.CONCURRENCY_FULL: QUEUE_FULL,
    ErrorClass.TRANSIENT: (429, _err("ServerOverloaded", "The service is currently unable to handle additional requests.", "TooManyRequests"), {}),
    ErrorClass.QUOTA_EXHAUSTED: (403, _err("AccountOverdueError", "The request failed because your account has an overdue balance.", "Forbidden"), {}),
    ErrorClass.CONTENT_REJECTED: (400, _err("InputTextSensitiveContentDetected", "The request failed because the input text may contain sensitive information."), {}),
    ErrorClass.INVALID: (400, _err("InvalidParameter", "One or more parameters specified in the request are not valid."), {}),
}
SAFE_MODE_CAP = (429, _err("SetLimitExceeded", "Your account has reached the set inference limit in safe experience mode.", "TooManyRequests"), {})


class SeedanceEmulator(Emulator):
    def reset(self) -> None:
        super().reset()
        self.echo_content = False  # real Ark task objects do not echo the prompt (as far as we know)

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/contents/generations/tasks", self.create, methods=["POST"]),
            Route(f"{PREFIX}/contents/generations/tasks", self.list, methods=["GET"]),
            Route(f"{PREFIX}/contents/generations/tasks/{{tid}}", self.get, methods=["GET"]),
            Route(f"{PREFIX}/contents/generations/tasks/{{tid}}", self.delete, methods=["DELETE"]),
        ]

    @property
    def base_url(self) -> str:
        return self.url + PREFIX

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse(_err("AuthenticationError", "The API key in the request is missing or invalid.", "Unauthorized"), status_code=401)
        return None

    def _task(self, job: Job) -> dict[str, Any]:
        out: dict[str, Any] = {"id": job.id, "model": job.model, "status": job.state, "created_at": int(job.created_at),
                               "updated_at": int(job.created_at), "error": None}
        if self.echo_content:
            out["content"] = job.body["content"]
        if job.state == "succeeded":
            out["content"] = {"video_url": self.file_url(job)}
            out["usage"] = {"completion_tokens": 108900, "total_tokens": 108900}
        if job.state == "failed":
            out["error"] = {"code": "OutputVideoSensitiveContentDetected", "message": "The generated video may contain sensitive information."}
        return out

    async def create(self, request: Request) -> Response:
        if (f := self.fault("create", request) or self._auth(request)) is not None:
            return f
        body = await request.json()
        texts = [c["text"] for c in body.get("content", []) if c.get("type") == "text"]
        if not body.get("model") or not texts:
            return JSONResponse(_err("MissingParameter", "model and content are required."), status_code=400)
        queued = sum(j.state == "queued" for j in self.jobs.values())
        if queued >= (self.max_inflight if self.max_inflight is not None else QUEUE_CAP):
            return JSONResponse(QUEUE_FULL[1], status_code=429)
        job = await self.create_job(texts[0], body["model"], body)
        return JSONResponse({"id": job.id})

    async def get(self, request: Request) -> Response:
        if (f := self.fault("poll", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["tid"])
        if job is None:
            return JSONResponse(_err("InvalidParameter.TaskNotFound", "task not found"), status_code=404)
        return JSONResponse(self._task(self.advance(job)))

    async def list(self, request: Request) -> Response:
        if (f := self.fault("list", request) or self._auth(request)) is not None:
            return f
        model = request.query_params.get("filter.model")
        items = [self._task(j) for j in sorted(self.jobs.values(), key=lambda j: j.id, reverse=True) if not model or j.model == model]
        return JSONResponse({"items": items, "total": len(items)})

    async def delete(self, request: Request) -> Response:
        if (f := self.fault("cancel", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["tid"])
        if job is None:
            return JSONResponse(_err("InvalidParameter.TaskNotFound", "task not found"), status_code=404)
        if job.state == "queued":
            job.state = "cancelled"
        return JSONResponse({})
