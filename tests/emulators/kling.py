"""Emulator of Kling's `/v1/videos/text2video` task API, JWT auth included."""

from __future__ import annotations

from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job


def _err(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": "req-emu"}


ERRORS: dict[ErrorClass, tuple[int, Any, dict[str, str]]] = {
    ErrorClass.RATE_LIMITED: (429, _err(1302, "The API request is too fast, please slow down"), {"Retry-After": "5"}),
    ErrorClass.CONCURRENCY_FULL: (429, _err(1303, "Parallel tasks over resource pack limit"), {}),
    ErrorClass.TRANSIENT: (500, _err(5000, "Server internal error"), {}),
    ErrorClass.QUOTA_EXHAUSTED: (429, _err(1102, "Resource pack depleted or expired"), {}),
    ErrorClass.CONTENT_REJECTED: (400, _err(1301, "Trigger the content security policy of the platform"), {}),
    ErrorClass.INVALID: (400, _err(1201, "Invalid request parameters: duration"), {}),
}
# Arrears (1101) is an account problem, not retryable either.
ARREARS = (429, _err(1101, "Account in arrears (overdue payment)"), {})

_STATE = {"queued": "submitted", "running": "processing", "succeeded": "succeed", "failed": "failed", "cancelled": "failed"}


class KlingEmulator(Emulator):
    def __init__(self, *, access_key: str, secret_key: str) -> None:
        self.access_key, self.secret_key = access_key, secret_key
        self.claims: list[dict[str, Any]] = []
        super().__init__(api_key="")

    def routes(self) -> list[Route]:
        return [
            Route("/v1/videos/text2video", self.create, methods=["POST"]),
            Route("/v1/videos/text2video", self.list, methods=["GET"]),
            Route("/v1/videos/text2video/{tid}", self.get, methods=["GET"]),
        ]

    def _auth(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return JSONResponse(_err(1001, "Authorization is empty"), status_code=401)
        try:
            claims = jwt.decode(header[7:], self.secret_key, algorithms=["HS256"], options={"require": ["iss", "exp", "nbf"]})
        except jwt.ExpiredSignatureError:
            return JSONResponse(_err(1004, "Authorization is expired"), status_code=401)
        except jwt.ImmatureSignatureError:
            return JSONResponse(_err(1003, "Authorization is not yet valid"), status_code=401)
        except jwt.InvalidTokenError:
            return JSONResponse(_err(1002, "Authorization is invalid"), status_code=401)
        if claims["iss"] != self.access_key:
            return JSONResponse(_err(1002, "Authorization is invalid"), status_code=401)
        self.claims.append(claims)
        return None

    def _task(self, job: Job) -> dict[str, Any]:
        out: dict[str, Any] = {"task_id": job.id, "task_status": _STATE[job.state],
                               "task_info": {"external_task_id": job.body.get("external_task_id")},
                               "created_at": int(job.created_at * 1000), "updated_at": int(job.created_at * 1000)}
        if job.state == "succeeded":
            out["task_result"] = {"videos": [{"id": f"v-{job.id}", "url": self.file_url(job), "duration": "5.1"}]}
        if job.state == "failed":
            out["task_status_msg"] = "Failure to pass the risk control system"
        return out

    async def create(self, request: Request) -> Response:
        if (f := self.fault("create", request) or self._auth(request)) is not None:
            return f
        body = await request.json()
        if not body.get("prompt"):
            return JSONResponse(_err(1201, "prompt is required"), status_code=400)
        if self.max_inflight is not None and self.inflight() >= self.max_inflight:
            return JSONResponse(_err(1303, "Parallel tasks over resource pack limit"), status_code=429)
        job = await self.create_job(body["prompt"], body.get("model_name", ""), body)
        return JSONResponse({"code": 0, "message": "SUCCEED", "request_id": "req-emu", "data": self._task(job)})

    async def get(self, request: Request) -> Response:
        if (f := self.fault("poll", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["tid"])
        if job is None:
            return JSONResponse(_err(1203, "Task not found"), status_code=404)
        return JSONResponse({"code": 0, "message": "SUCCEED", "request_id": "req-emu", "data": self._task(self.advance(job))})

    async def list(self, request: Request) -> Response:
        if (f := self.fault("list", request) or self._auth(request)) is not None:
            return f
        page, size = int(request.query_params.get("pageNum", 1)), int(request.query_params.get("pageSize", 30))
        jobs = sorted(self.jobs.values(), key=lambda j: j.id, reverse=True)[(page - 1) * size: page * size]
        return JSONResponse({"code": 0, "message": "SUCCEED", "request_id": "req-emu", "data": [self._task(j) for j in jobs]})
