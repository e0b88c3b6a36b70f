"""Runway API (api.dev.runwayml.com) text/image-to-video adapter.

Written from Runway's public API docs (errors and task-failure pages), without
live access (no network here); model names and defaults are from memory.

Every request carries `X-Runway-Version: 2024-11-06` and `Authorization: Bearer <key>`.

Endpoints:
- `POST /v1/text_to_video` `{model, promptText, ratio, duration, seed}` (or
  `POST /v1/image_to_video` when `params` has `promptImage`) → `{id}`.
- `GET /v1/tasks/{id}` → `{status: PENDING|THROTTLED|RUNNING|SUCCEEDED|FAILED|
  CANCELLED, createdAt, progress (0..1 while running), output: [url], failure,
  failureCode, estimatedCost | cost: {credits}}` (runwayml 5.24,
  `types/task_retrieve_response.py`). A finished task's `cost.credits` goes to
  `JobStatus.usage["credits"]`; any other status is a TRANSIENT error naming it
  (`HttpAdapter._unknown_status`).
  THROTTLED means queued behind the account's concurrency limit: the status is
  QUEUED with `error_class=CONCURRENCY_FULL` as a hint to the gateway (Runway
  queues rather than rejects, so a submit never fails for concurrency).
- `DELETE /v1/tasks/{id}`: cancels a running task (deletes a finished one).
- No task listing: an ambiguous submit cannot be looked up (no `find_job`).

HTTP errors (body `{"error": "..."}`): 400 → INVALID, or QUOTA_EXHAUSTED when
the message is about credits · 401 → AUTH · 404/405 → INVALID · 429 →
RATE_LIMITED (QUOTA_EXHAUSTED when it names a daily limit) · 502/503/504 →
TRANSIENT (load shedding). Task `failureCode`: `SAFETY.*` and
`INPUT_PREPROCESSING.SAFETY.*` → CONTENT_REJECTED (do not retry) ·
`INTERNAL.BAD_OUTPUT.*`, `INTERNAL*` → TRANSIENT · `INPUT_PREPROCESSING.*`,
`ASSET.INVALID` → INVALID. Output URLs are ephemeral (they expire within days).
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from afd_async.teacher.adapters._http import HttpAdapter, class_for_status, message_hint, parse_progress
from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState, JobStatus, TeacherError

API_VERSION = "2024-11-06"
STATES = {"PENDING": JobState.QUEUED, "THROTTLED": JobState.QUEUED, "RUNNING": JobState.RUNNING,
          "SUCCEEDED": JobState.SUCCEEDED, "FAILED": JobState.FAILED, "CANCELLED": JobState.CANCELLED}


def classify_failure(code: str) -> ErrorClass:
    """Runway task `failureCode` → class."""
    if code.startswith("SAFETY") or code.startswith("INPUT_PREPROCESSING.SAFETY"):
        return ErrorClass.CONTENT_REJECTED
    if code.startswith("INTERNAL"):
        return ErrorClass.TRANSIENT
    if code.startswith("INPUT_PREPROCESSING") or code.startswith("ASSET"):
        return ErrorClass.INVALID
    return ErrorClass.TRANSIENT


class RunwayClient(HttpAdapter):
    """TeacherClient for Runway's task API."""

    provider = "runway"

    def __init__(self, *, base_url: str, api_key: str, model: str = "gen4.5", timeout_s: float = 30.0, api_version: str = API_VERSION, **kw: Any) -> None:
        super().__init__(base_url=base_url, timeout_s=timeout_s, secrets=[api_key], headers={"X-Runway-Version": api_version}, **kw)
        self._api_key = api_key
        self.model = model or "gen4.5"

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def _error(self, resp: httpx.Response, body: Any) -> TeacherError:
        message = body.get("error") if isinstance(body, dict) else None
        message = message if isinstance(message, str) else None
        cls = class_for_status(resp.status_code)
        hint = message_hint(message)
        if resp.status_code == 400 and hint is ErrorClass.QUOTA_EXHAUSTED:
            cls = hint
        elif resp.status_code == 429 and message and re.search(r"(?i)daily", message):
            cls = ErrorClass.QUOTA_EXHAUSTED
        return self._make_error(resp, None, message, cls)

    async def submit(self, request: JobRequest) -> JobHandle:
        params = dict(request.params)
        route = "/v1/image_to_video" if "promptImage" in params else "/v1/text_to_video"
        body = {"model": request.model or self.model, "promptText": request.prompt, "ratio": params.pop("ratio", "1280:720"),
                "duration": params.pop("duration", 5), "seed": request.seed, **params}
        resp = await self._send("POST", route, json=body, submit=True)
        return JobHandle(provider=self.provider, job_id=str(resp.json()["id"]), model=body["model"])

    async def poll(self, handle: JobHandle) -> JobStatus:
        body = await self._get_json(f"/v1/tasks/{handle.job_id}")
        raw = body.get("status")
        state = STATES.get(raw) if isinstance(raw, str) else None
        if state is None:
            raise self._unknown_status(handle, "status", raw, STATES)
        output = body.get("output") or []
        cls, msg = None, None
        if state is JobState.FAILED:
            cls = classify_failure(str(body.get("failureCode") or ""))
            msg = self.redact(f"{body.get('failureCode')}: {body.get('failure')}")
        elif raw == "THROTTLED":
            cls, msg = ErrorClass.CONCURRENCY_FULL, "THROTTLED: queued behind the account's concurrency limit"
        progress = body.get("progress")
        cost = body.get("cost")
        credits = cost.get("credits") if isinstance(cost, dict) else None
        return JobStatus(
            handle=handle,
            state=state,
            progress=1.0 if state is JobState.SUCCEEDED else parse_progress(progress),
            result_url=output[0] if state is JobState.SUCCEEDED and output else None,
            error_class=cls,
            error_message=msg,
            usage={"credits": credits} if isinstance(credits, (int, float)) and not isinstance(credits, bool) else {},
        )

    async def cancel(self, handle: JobHandle) -> None:
        await self._send("DELETE", f"/v1/tasks/{handle.job_id}")
