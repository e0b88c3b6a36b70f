"""Emulator of the OpenAI-style `/v1/videos` contract the local teacher server speaks."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job


def _err(code: str, message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": kind}}


# One injected create failure per error class: (HTTP status, body, headers).
ERRORS: dict[ErrorClass, tuple[int, Any, dict[str, str]]] = {
    ErrorClass.RATE_LIMITED: (429, _err("rate_limit", "Rate limit reached for requests", "rate_limit_error"), {"Retry-After": "7"}),
    ErrorClass.CONCURRENCY_FULL: (429, _err("concurrency_limit", "Too many jobs in progress", "rate_limit_error"), {"Retry-After": "3"}),
    ErrorClass.TRANSIENT: (503, _err("server_error", "The server is overloaded", "server_error"), {}),
    ErrorClass.QUOTA_EXHAUSTED: (429, _err("insufficient_quota", "You exceeded your current quota", "insufficient_quota"), {}),
    ErrorClass.CONTENT_REJECTED: (400, _err("moderation_blocked", "Your request was blocked by our moderation system"), {}),
    ErrorClass.INVALID: (400, _err("invalid_value", "Invalid value for 'seconds'"), {}),
}

_STATE = {"queued": "queued", "running": "in_progress", "succeeded": "completed", "failed": "failed", "cancelled": "cancelled"}


class OpenAIVideosEmulator(Emulator):
    def routes(self) -> list[Route]:
        return [
            Route("/v1/videos", self.create, methods=["POST"]),
            Route("/v1/videos", self.list, methods=["GET"]),
            Route("/v1/videos/{vid}", self.get, methods=["GET"]),
            Route("/v1/videos/{vid}/content", self.content, methods=["GET"]),
            Route("/v1/videos/{vid}/cancel", self.cancel, methods=["POST"]),
        ]

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse(_err("invalid_api_key", "Incorrect API key provided", "invalid_request_error"), status_code=401)
        return None

    def _video(self, job: Job) -> dict[str, Any]:
        out: dict[str, Any] = {"id": job.id, "object": "video", "model": job.model, "prompt": job.prompt,
                               "status": _STATE[job.state], "created_at": int(job.created_at),
                               "progress": {"queued": 0, "running": 50}.get(job.state, 100)}
        if job.state == "failed":
            out["error"] = {"code": "content_policy", "message": "The prompt violates the content policy"}
        return out

    async def create(self, request: Request) -> Response:
        if (f := self.fault("create", request) or self._auth(request)) is not None:
            return f
        body = await request.json()
        if self.max_inflight is not None and self.inflight() >= self.max_inflight:
            return JSONResponse(_err("concurrency_limit", "Too many jobs in progress", "rate_limit_error"), status_code=429, headers={"Retry-After": "2"})
        job = await self.create_job(body["prompt"], body.get("model", ""), body)
        return JSONResponse({"id": job.id, "object": "video", "status": "queued", "progress": 0})

    async def get(self, request: Request) -> Response:
        if (f := self.fault("poll", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["vid"])
        if job is None:
            return JSONResponse(_err("not_found", "No such video"), status_code=404)
        return JSONResponse(self._video(self.advance(job)))

    async def list(self, request: Request) -> Response:
        if (f := self.fault("list", request) or self._auth(request)) is not None:
            return f
        data = [self._video(j) for j in sorted(self.jobs.values(), key=lambda j: j.id, reverse=True)]
        return JSONResponse({"object": "list", "data": data, "has_more": False})

    async def content(self, request: Request) -> Response:
        if (f := self.fault("file", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["vid"])
        if job is None or job.state != "succeeded":
            return JSONResponse(_err("not_found", "No content"), status_code=404)
        if self.expire_results:
            return JSONResponse(_err("expired", "Video content has expired"), status_code=410)
        return Response(self.file_bytes, media_type="video/mp4")

    async def cancel(self, request: Request) -> Response:
        if (f := self.fault("cancel", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["vid"])
        if job is None:
            return JSONResponse(_err("not_found", "No such video"), status_code=404)
        if not job.terminal:
            job.state = "cancelled"
        return JSONResponse(self._video(job))
