"""Emulator of Luma's Dream Machine generations API (`api.lumalabs.ai/dream-machine/v1`).

Where each rule comes from:

- Create is `POST /generations/video`: the path the official SDK posts
  (lumaai 1.21, `lumaai/resources/generations/generations.py`, `GenerationsResource.create`).
  Luma's guides (https://docs.lumalabs.ai/docs/video-generation) still show `POST /generations`
  for text-to-video, so that route is served too, with the same handler.
- `GET /generations/{id}`, `DELETE /generations/{id}` (204), `GET /generations?limit&offset`
  (same SDK file, `get`, `delete`, `list`).
- The Generation object: `id`, `generation_type` (`video`), `state` in `queued | dreaming |
  completed | failed`, `failure_reason`, `created_at` (ISO 8601), `assets {video, image,
  progress_video}`, `model`, `request` (the create body echoed): `lumaai/types/generation.py`.
  The list reply `{generations, count, has_more, limit, offset}`: `lumaai/types/generation_list_response.py`.
- Create answers 201 with the Generation; errors are `{"detail": "..."}`; auth is
  `Authorization: Bearer <key>` (the API's OpenAPI document, github.com/lumalabs/lumaai-api
  `openapi.yaml`, and `lumaai/_client.py` `auth_headers`).
- Luma has no cancelled state: a deleted generation is gone (404), which the adapter reads as CANCELLED.
"""

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
# Every `state` the API returns (lumaai/types/generation.py `Generation.state`), by emulator job state.
STATES = {"queued": "queued", "running": "dreaming", "succeeded": "completed", "failed": "failed"}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class LumaEmulator(Emulator):
    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/generations/video", self.create, methods=["POST"]),
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
        assets: dict[str, Any] = {"video": None, "image": None, "progress_video": None}
        if job.state == "succeeded":
            assets["video"] = self.file_url(job)
        return {"id": job.id, "generation_type": "video", "state": STATES[job.state], "created_at": iso(job.created_at),
                "failure_reason": "Output video failed moderation" if job.state == "failed" else None,
                "assets": assets, "model": job.model, "request": {"generation_type": "video", **job.body}}

    async def create(self, request: Request) -> Response:
        if (f := self.fault("create", request) or self._auth(request)) is not None:
            return f
        body = await request.json()
        if not isinstance(body, dict) or not body.get("model"):
            return JSONResponse({"detail": "model: field required"}, status_code=422)
        if self.max_inflight is not None and self.inflight() >= self.max_inflight:
            return JSONResponse({"detail": "Too many concurrent generations for your plan"}, status_code=429)
        job = await self.create_job(body.get("prompt", ""), body["model"], body)
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
        limit, offset = int(request.query_params.get("limit", 10)), int(request.query_params.get("offset", 0))
        live = [j for j in sorted(self.jobs.values(), key=lambda j: j.id, reverse=True) if j.state != "cancelled"]
        page = [self._gen(j) for j in live[offset:offset + limit]]
        return JSONResponse({"generations": page, "count": len(page), "has_more": offset + limit < len(live),
                             "limit": limit, "offset": offset})

    async def delete(self, request: Request) -> Response:
        if (f := self.fault("cancel", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["gid"])
        if job is None or job.state == "cancelled":
            return JSONResponse({"detail": "Generation not found"}, status_code=404)
        job.state = "cancelled"
        return Response(status_code=204)
