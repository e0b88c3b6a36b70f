"""Emulator of the OpenAI Videos API (`/v1/videos`), as the official `openai` SDK uses it.

Each rule and its source: the API reference (developers.openai.com/api/reference/
resources/videos) and the SDK's files (`openai` 3.x: `resources/videos.py`,
`types/video*.py`, `pagination.py`). tests/integration/test_sdk_openai.py runs the
SDK itself against this emulator.

- Create `POST /v1/videos` (`resources/videos.py` sends multipart/form-data, every
  field a string; `types/video_create_params.py`): `prompt` required; `model`
  defaults to `sora-2`, `seconds` to "4", `size` to `720x1280` (API reference,
  create video). A JSON body is read too. The answer is the full Video object.
- Video object (`types/video.py`): id, object "video", model, status
  queued|in_progress|completed|failed (nothing else), progress int 0-100,
  created_at, completed_at and expires_at (Unix s; the files' retention is not in
  the types: one hour after completion here), prompt, seconds (str), size (str),
  error `{code, message}` (`types/video_create_error.py`) or null,
  remixed_from_video_id null.
- `GET /v1/videos` (`types/video_list_params.py`: after, limit, order asc|desc by
  creation; `pagination.py` `SyncConversationCursorPage` reads data, has_more,
  last_id and asks again with `after=last_id`): `{object: "list", data, first_id,
  last_id, has_more}`.
- `GET /v1/videos/{id}/content?variant=video|thumbnail|spritesheet`
  (`types/video_download_content_params.py`; MP4, WebP thumbnail, JPEG
  spritesheet). An unknown variant is 400. Expired files answer 410 (the API's
  status for this is undocumented; the local teacher server answers the same).
- `DELETE /v1/videos/{id}` (`types/video_delete_response.py`): `{id, object:
  "video.deleted", deleted: true}`; the video is then 404. There is no cancel
  route in the API: delete is how a client stops a job (as the adapter does).
- Errors (API reference): `{"error": {"code", "message", "type", "param"}}`; 401
  `invalid_api_key` for a wrong bearer key.

`file_bytes` is what `variant=video` serves (a stub by default; the SDK test sets a real MP4).
"""

from __future__ import annotations

import io
import json
import time
from typing import Any, Optional

from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job

DEFAULTS = {"model": "sora-2", "seconds": "4", "size": "720x1280"}  # API reference, create video
RETENTION_S = 3600.0  # expires_at - completed_at (an assumption: the types do not state it)


def _err(code: str, message: str, kind: str = "invalid_request_error", param: Optional[str] = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": kind, "param": param}}


# One injected create failure per error class: (HTTP status, body, headers).
ERRORS: dict[ErrorClass, tuple[int, Any, dict[str, str]]] = {
    ErrorClass.RATE_LIMITED: (429, _err("rate_limit", "Rate limit reached for requests", "rate_limit_error"), {"Retry-After": "7"}),
    ErrorClass.CONCURRENCY_FULL: (429, _err("concurrency_limit", "Too many jobs in progress", "rate_limit_error"), {"Retry-After": "3"}),
    ErrorClass.TRANSIENT: (503, _err("server_error", "The server is overloaded", "server_error"), {}),
    ErrorClass.QUOTA_EXHAUSTED: (429, _err("insufficient_quota", "You exceeded your current quota", "insufficient_quota"), {}),
    ErrorClass.CONTENT_REJECTED: (400, _err("moderation_blocked", "Your request was blocked by our moderation system"), {}),
    ErrorClass.INVALID: (400, _err("invalid_value", "Invalid value for 'seconds'", param="seconds"), {}),
}

_STATE = {"queued": "queued", "running": "in_progress", "succeeded": "completed", "failed": "failed"}


def _image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 9), (40, 90, 160)).save(buf, format=fmt)
    return buf.getvalue()


PREVIEWS = {"thumbnail": (_image("WEBP"), "image/webp"), "spritesheet": (_image("JPEG"), "image/jpeg")}


class OpenAIVideosEmulator(Emulator):
    def routes(self) -> list[Route]:
        return [
            Route("/v1/videos", self.create, methods=["POST"]),
            Route("/v1/videos", self.list, methods=["GET"]),
            Route("/v1/videos/{vid}", self.get, methods=["GET"]),
            Route("/v1/videos/{vid}", self.delete, methods=["DELETE"]),
            Route("/v1/videos/{vid}/content", self.content, methods=["GET"]),
        ]

    def reset(self) -> None:
        super().reset()
        self.finished_at: dict[str, float] = {}  # job id -> when it was first seen terminal

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse(_err("invalid_api_key", "Incorrect API key provided", "invalid_request_error"), status_code=401)
        return None

    def _video(self, job: Job) -> dict[str, Any]:
        done = self.finished_at.setdefault(job.id, time.time()) if job.terminal else None
        failed = job.state == "failed"
        return {
            "id": job.id, "object": "video", "model": job.model, "status": _STATE[job.state],
            "progress": {"queued": 0, "running": 50, "failed": 0}.get(job.state, 100),
            "created_at": int(job.created_at), "completed_at": None if done is None else int(done),
            "expires_at": int(done + RETENTION_S) if done is not None and not failed else None,
            "prompt": job.prompt, "seconds": str(job.body.get("seconds") or DEFAULTS["seconds"]),
            "size": str(job.body.get("size") or DEFAULTS["size"]), "remixed_from_video_id": None,
            "error": {"code": "moderation_blocked", "message": "The prompt violates the content policy"} if failed else None,
        }

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        """The create fields, from a form (as the SDK sends) or JSON; raises ValueError when unreadable."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.form()
            return {k: v for k, v in form.multi_items() if isinstance(v, str)}
        body = json.loads(await request.body())
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    async def create(self, request: Request) -> Response:
        if (f := self.fault("create", request) or self._auth(request)) is not None:
            return f
        try:
            body = await self._body(request)
        except ValueError as exc:
            return JSONResponse(_err("invalid_request_error", f"Could not parse the body: {exc}"), status_code=400)
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return JSONResponse(_err("missing_required_parameter", "Missing required parameter: 'prompt'.", param="prompt"), status_code=400)
        if self.max_inflight is not None and self.inflight() >= self.max_inflight:
            return JSONResponse(_err("concurrency_limit", "Too many jobs in progress", "rate_limit_error"), status_code=429, headers={"Retry-After": "2"})
        job = await self.create_job(body["prompt"], str(body.get("model") or DEFAULTS["model"]), body)
        return JSONResponse(self._video(job))

    def _job(self, request: Request) -> Job | Response:
        job = self.jobs.get(request.path_params["vid"])
        if job is None:
            return JSONResponse(_err("not_found", f"Video with id '{request.path_params['vid']}' not found."), status_code=404)
        return job

    async def get(self, request: Request) -> Response:
        if (f := self.fault("poll", request) or self._auth(request)) is not None:
            return f
        job = self._job(request)
        return job if isinstance(job, Response) else JSONResponse(self._video(self.advance(job)))

    async def list(self, request: Request) -> Response:
        if (f := self.fault("list", request) or self._auth(request)) is not None:
            return f
        q = request.query_params
        desc = q.get("order", "desc") != "asc"
        jobs = sorted(self.jobs.values(), key=lambda j: j.id, reverse=desc)  # ids grow with creation
        if q.get("after"):
            jobs = [j for j in jobs if (j.id < q["after"] if desc else j.id > q["after"])]
        limit = max(1, min(100, int(q.get("limit", "20"))))
        page = jobs[:limit]
        return JSONResponse({"object": "list", "data": [self._video(j) for j in page],
                             "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None,
                             "has_more": len(jobs) > limit})

    async def content(self, request: Request) -> Response:
        if (f := self.fault("file", request) or self._auth(request)) is not None:
            return f
        variant = request.query_params.get("variant", "video")
        if variant not in ("video", *PREVIEWS):
            return JSONResponse(_err("invalid_value", f"Invalid value for 'variant': {variant!r}.", param="variant"), status_code=400)
        job = self._job(request)
        if isinstance(job, Response):
            return job
        if job.state != "succeeded":
            return JSONResponse(_err("invalid_request_error", "Video is not ready yet."), status_code=400)
        if self.expire_results:
            return JSONResponse(_err("expired", "Video content has expired"), status_code=410)
        if variant == "video":
            return Response(self.file_bytes, media_type="video/mp4")
        data, media_type = PREVIEWS[variant]
        return Response(data, media_type=media_type)

    async def delete(self, request: Request) -> Response:
        if (f := self.fault("cancel", request) or self._auth(request)) is not None:
            return f
        job = self._job(request)
        if isinstance(job, Response):
            return job
        del self.jobs[job.id]
        return JSONResponse({"id": job.id, "object": "video.deleted", "deleted": True})
