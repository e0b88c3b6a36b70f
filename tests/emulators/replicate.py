"""Emulator of Replicate's predictions API (`api.replicate.com/v1`).

Where each rule comes from:

- Routes: `POST /v1/models/{owner}/{name}/predictions` `{input}` (official models),
  `POST /v1/predictions` `{version, input}`, `GET /v1/predictions[/{id}]`,
  `POST /v1/predictions/{id}/cancel` (https://replicate.com/docs/reference/http; replicate-python
  1.0.7 `replicate/prediction.py`, `replicate/model.py`). Auth: `Authorization: Bearer <token>`
  (`replicate/client.py` `_build_httpx_client`).
- `status` is one of `starting`, `processing`, `succeeded`, `failed`, `canceled`
  (https://replicate.com/docs/topics/predictions/lifecycle; the SDK's `Prediction.status`
  Literal); `aborted` (a `Cancel-After` deadline passed before the prediction started) is the
  sixth value the lifecycle page lists, emitted here for jobs the test marks with `abort()`.
- The prediction object: `id, model, version, input, logs, output, data_removed, error, status,
  created_at, started_at, completed_at, urls {get, cancel, stream, web}, metrics {predict_time,
  total_time}` (the HTTP reference's prediction schema; `replicate/prediction.py` `Prediction`).
- `Prefer: wait` / `Prefer: wait=N` (1 <= N <= 60, default 60) holds the create reply until the
  prediction finishes or N seconds pass, then answers 201 with the prediction as it is
  (https://replicate.com/docs/topics/predictions/create-a-prediction, "sync mode";
  `replicate/prediction.py` `_create_prediction_headers`). Any other `Prefer` value is ignored,
  as RFC 7240 §2 has a server do with preferences it does not support. While a create holds,
  the job advances one lifecycle step every `wait_step_s` seconds (the emulator's model of run time).
- `Cancel-After: <duration>` is recorded on the job (https://replicate.com/changelog/2025-10-16-prediction-deadlines).
- Errors are problem JSON `{type, title, detail, status}` (the HTTP reference's error section).
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone
from typing import Any, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.teacher.contract import ErrorClass

from .base import Emulator, Job

PREFIX = "/v1"
MODEL = "bytedance/seedance-1-pro"
# Every prediction `status` the API returns, by emulator job state (`aborted`: a cancelled job in `abort()`'s set).
STATUSES = {"queued": "starting", "running": "processing", "succeeded": "succeeded", "failed": "failed",
            "cancelled": "canceled"}
MAX_WAIT_S = 60
_PREFER_WAIT = re.compile(r"^\s*wait(?:\s*=\s*(\d+))?\s*$")


def _problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "detail": detail, "status": status, **extra}


def _iso(ts: Optional[float]) -> Optional[str]:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def prefer_wait_s(header: Optional[str]) -> Optional[int]:
    """Seconds a `Prefer` header asks the create to hold: `wait` → 60, `wait=N` → N in [1, 60]; else None."""
    if header is None:
        return None
    for pref in header.split(","):
        m = _PREFER_WAIT.match(pref)
        if m:
            n = int(m.group(1)) if m.group(1) else MAX_WAIT_S
            return n if 1 <= n <= MAX_WAIT_S else None
    return None


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
        self.wait_step_s = 0.01  # run time per lifecycle step while a `Prefer: wait` create holds
        self.waits: list[Optional[int]] = []  # the hold each create asked for (None: no `Prefer: wait`)
        self._started: dict[str, float] = {}
        self._completed: dict[str, float] = {}
        self._aborted: set[str] = set()

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

    def advance(self, job: Job) -> Job:
        super().advance(job)
        self._mark(job)
        return job

    def abort(self, job_id: str) -> None:
        """The prediction's `Cancel-After` deadline passes before it starts: status `aborted`."""
        job = self.jobs[job_id]
        job.state = "cancelled"
        self._aborted.add(job.id)
        self._mark(job)

    def _mark(self, job: Job) -> None:
        if job.state in ("running", "succeeded", "failed"):  # a prediction cancelled or aborted while starting never started
            self._started.setdefault(job.id, time.time())
        if job.terminal:
            self._completed.setdefault(job.id, time.time())

    def _pred(self, job: Job) -> dict[str, Any]:
        root = f"{self.base_url}/predictions/{job.id}"
        out: dict[str, Any] = {
            "id": job.id, "model": job.model, "version": job.body.get("version") or "hidden",
            "input": job.body.get("input", {}), "logs": "" if job.state == "queued" else "Generating video...\n",
            "output": None, "data_removed": False, "error": None, "source": "api",
            "status": "aborted" if job.id in self._aborted else STATUSES[job.state],
            "created_at": _iso(job.created_at), "started_at": _iso(self._started.get(job.id)),
            "completed_at": _iso(self._completed.get(job.id)),
            "urls": {"get": root, "cancel": f"{root}/cancel", "stream": f"{root}/stream", "web": f"https://replicate.com/p/{job.id}"},
            "metrics": {}}
        if job.state == "succeeded":
            out["output"] = self.file_url(job)
            out["metrics"] = {"predict_time": 41.5, "total_time": 43.0}
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
        wait = prefer_wait_s(request.headers.get("prefer"))
        self.waits.append(wait)
        if wait is not None:
            deadline = time.monotonic() + wait
            while not job.terminal and time.monotonic() + self.wait_step_s < deadline:
                await asyncio.sleep(self.wait_step_s)  # the job runs for one step while the reply is held
                self.advance(job)
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
            self._mark(job)
        return JSONResponse(self._pred(job))

    def expired_file_response(self) -> Response:
        return Response(b"Not Found", status_code=404)
