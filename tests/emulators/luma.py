"""Emulator of Luma's Dream Machine generations API."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job

PREFIX = "/dream-machine/v1"

ERRORS: dict[ErrorClass, tuple[int, Any, dict[str, str]]] = {
    ErrorClass.RATE_LIMITED: (429, {"detail": "Rate limit exceeded, please retry later"}, {"Retry-After": "6"}),
    ErrorClass.CONCURRENCY_FULL: (429, {"detail": "Too many concurrent generations for your plan"}, {}),
    ErrorClass.TRANSIENT: (502, {"detail": "Bad gateway"}, {}),
    ErrorClass.QUOTA_EXHAUSTED: (400, {"detail": "Insufficient credits"}, {}),
    ErrorClass.CONTENT_REJECTED: (400, {"detail": "400: prompt not allowed because advanced moderation failed"}, {}),
    ErrorClass.INVALID: (422, {"detail": "Invalid aspect_ratio"}, {}),
}
_STATE = {"queued": "queued", "running": "dreaming", "succeeded": "completed", "failed": "failed"}


class LumaEmulator(Emulator):
    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/generations", self.create, methods=["POST"]),
            Route(f"{PREFIX}/generations", self.list, methods=["GET"]),
            Route(f"{PREFIX}/generations/{{gid}}", self.get, methods=["GET"]),
            Route(f"{PREFIX}/generations/{{gid}}", self.delete, methods=["DELETE"]),
        ]

    @property
    def base_url(self) -> str:
        return self.url + PREFIX

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"detail": "Invalid API key"}, status_code=401)
        return None

    def _gen(self, job: Job) -> dict[str, Any]:
        created = datetime.fromtimestamp(job.created_at, tz=timezone.utc).isoformat().replace("+00:00", "Z")
        out: dict[str, Any] = {"id": job.id, "state": _STATE[job.state], "created_at": created, "failure_reason": None,
                               "assets": {}, "request": job.body}
        if job.state == "succeeded":
            out["assets"] = {"video": self.file_url(job)}
        if job.state == "failed":
            out["failure_reason"] = "Output video failed moderation"
        return out

    async def create(self, request: Request) -> Response:
        if (f := self.fault("create", request) or self._auth(request)) is not None:
            return f
        body = await request.json()
        if self.max_inflight is not None and self.inflight() >= self.max_inflight:
            return JSONResponse({"detail": "Too many concurrent generations for your plan"}, status_code=429)
        job = await self.create_job(body.get("prompt", ""), body.get("model", ""), body)
        return JSONResponse(self._gen(job), status_code=201)

    async def get(self, request: Request) -> Response:
        if (f := self.fault("poll", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["gid"])
        if job is None or job.state == "cancelled":
            return JSONResponse({"detail": "Generation not found"}, status_code=404)
        return JSONResponse(self._gen(self.advance(job)))

    async def list(self, request: Request) -> Response:
        if (f := self.fault("list", request) or self._auth(request)) is not None:
            return f
        gens = [self._gen(j) for j in sorted(self.jobs.values(), key=lambda j: j.id, reverse=True) if j.state != "cancelled"]
        return JSONResponse({"generations": gens, "has_more": False, "count": len(gens)})

    async def delete(self, request: Request) -> Response:
        if (f := self.fault("cancel", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["gid"])
        if job is None:
            return JSONResponse({"detail": "Generation not found"}, status_code=404)
        job.state = "cancelled"
        return Response(status_code=204)
