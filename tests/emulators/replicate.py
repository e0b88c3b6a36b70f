"""Emulator of Replicate's predictions API (Cancel-After, problem-JSON errors)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job

PREFIX = "/v1"
MODEL = "bytedance/seedance-1-pro"


def _problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "detail": detail, "status": status, **extra}


ERRORS: dict[ErrorClass, tuple[int, Any, dict[str, str]]] = {
    ErrorClass.RATE_LIMITED: (429, _problem(429, "Request was throttled.", "Request was throttled. Expected available in 2 seconds.", retry_after=2), {}),
    ErrorClass.CONCURRENCY_FULL: (429, _problem(429, "Too many concurrent predictions", "You have reached the limit of concurrent predictions for this model."), {}),
    ErrorClass.TRANSIENT: (500, _problem(500, "Internal Server Error", "Something went wrong"), {}),
    ErrorClass.QUOTA_EXHAUSTED: (402, _problem(402, "Insufficient credit", "You have insufficient credit to run this model."), {}),
    ErrorClass.CONTENT_REJECTED: (422, _problem(422, "Input validation failed", "The input was flagged as NSFW by the safety checker."), {}),
    ErrorClass.INVALID: (422, _problem(422, "Input validation failed", "- input.duration: must be one of 5, 10"), {}),
}


class ReplicateEmulator(Emulator):
    def reset(self) -> None:
        super().reset()
        self.list_inputs = True  # whether the list echoes each prediction's input (unsure for the real API)

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/models/{{owner}}/{{name}}/predictions", self.create, methods=["POST"]),
            Route(f"{PREFIX}/predictions", self.create, methods=["POST"]),
            Route(f"{PREFIX}/predictions", self.list, methods=["GET"]),
            Route(f"{PREFIX}/predictions/{{pid}}", self.get, methods=["GET"]),
            Route(f"{PREFIX}/predictions/{{pid}}/cancel", self.cancel, methods=["POST"]),
        ]

    @property
    def base_url(self) -> str:
        return self.url + PREFIX

    def _auth(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse(_problem(401, "Unauthenticated", "You did not pass a valid authentication token"), status_code=401)
        return None

    def _pred(self, job: Job) -> dict[str, Any]:
        root = f"{self.base_url}/predictions/{job.id}"
        status = {"queued": "starting", "cancelled": "canceled"}.get(job.state, job.state)
        out: dict[str, Any] = {"id": job.id, "model": job.model, "version": "v1", "input": job.body.get("input", {}), "status": status,
                               "output": None, "error": None, "urls": {"get": root, "cancel": f"{root}/cancel"}, "metrics": {},
                               "created_at": datetime.fromtimestamp(job.created_at, tz=timezone.utc).isoformat().replace("+00:00", "Z")}
        if job.state == "succeeded":
            out["output"] = self.file_url(job)
            out["metrics"] = {"predict_time": 41.5}
        if job.state == "failed":
            out["error"] = "NSFW content detected in the output. Try a different prompt."
        return out

    async def create(self, request: Request) -> Response:
        if (f := self.fault("create", request) or self._auth(request)) is not None:
            return f
        body = await request.json()
        model = f"{request.path_params['owner']}/{request.path_params['name']}" if "owner" in request.path_params else body.get("version", "")
        if self.max_inflight is not None and self.inflight() >= self.max_inflight:
            return JSONResponse(ERRORS[ErrorClass.CONCURRENCY_FULL][1], status_code=429)
        job = await self.create_job(body.get("input", {}).get("prompt", ""), model, body)
        job.body["cancel_after"] = request.headers.get("cancel-after")
        return JSONResponse(self._pred(job), status_code=201)

    async def get(self, request: Request) -> Response:
        if (f := self.fault("poll", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["pid"])
        if job is None:
            return JSONResponse(_problem(404, "Not found", "Prediction not found"), status_code=404)
        return JSONResponse(self._pred(self.advance(job)))

    async def list(self, request: Request) -> Response:
        if (f := self.fault("list", request) or self._auth(request)) is not None:
            return f
        preds = [self._pred(j) for j in sorted(self.jobs.values(), key=lambda j: j.id, reverse=True)]
        if not self.list_inputs:
            preds = [{k: v for k, v in p.items() if k != "input"} for p in preds]
        return JSONResponse({"previous": None, "next": None, "results": preds})

    async def cancel(self, request: Request) -> Response:
        if (f := self.fault("cancel", request) or self._auth(request)) is not None:
            return f
        job = self.jobs.get(request.path_params["pid"])
        if job is None:
            return JSONResponse(_problem(404, "Not found", "Prediction not found"), status_code=404)
        if not job.terminal:
            job.state = "cancelled"
        return JSONResponse(self._pred(job))

    def expired_file_response(self) -> Response:
        return Response(b"Not Found", status_code=404)
