"""Seedance on Volcengine Ark and BytePlus ModelArk (same API, different base URLs).

Written from the public Ark / ModelArk docs, without live access (no network
here); items marked *unsure* are from memory.

Base URLs: Volcengine `https://ark.cn-beijing.volces.com/api/v3`, BytePlus
`https://ark.ap-southeast.bytepluses.com/api/v3`. Auth: `Authorization: Bearer <ARK_API_KEY>`.

Endpoints:
- `POST {base}/contents/generations/tasks` `{model, content: [{type: "text", text}]}`
  → `{id}`. Generation options ride in the text as commands (`--seed 7
  --duration 5 --ratio 16:9 --resolution 720p`); other `params` go top-level
  (e.g. `callback_url`).
- `GET {base}/contents/generations/tasks/{id}` → `{id, model, status: queued|
  running|succeeded|failed|cancelled|expired, content: {video_url}, error: {code,
  message}, usage: {completion_tokens, total_tokens}, created_at}` (`expired`: the
  task outlived its execution window, *unsure* for older models). Any other status
  is a TRANSIENT error naming it (`HttpAdapter._unknown_status`).
- `DELETE {base}/contents/generations/tasks/{id}`: cancels a queued task.
- `GET {base}/contents/generations/tasks?page_num&page_size&filter.model` →
  `{items, total}`. Listed tasks do not echo the prompt (*unsure*), so this
  adapter deliberately has **no `find_job`**: the gateway reads `find_job() ->
  None` as "no such job, resubmit is safe", which the listing cannot promise,
  and a guess by time could pair a clip with the wrong prompt. Instead
  `recent_jobs(since)` lists candidates (to cancel orphans) and
  `match_listed(request)` matches exactly when a deployment does echo the text.

Error codes (body `{"error": {"code", "message", "type"}}`, also a failed task's `error`):
`AuthenticationError`, `AccessDenied` → AUTH · `AccountOverdueError`,
`QuotaExceeded` → QUOTA_EXHAUSTED · `SetLimitExceeded` → QUOTA_EXHAUSTED (the
account's self-set "safe experience" cap), but CONCURRENCY_FULL when its message
speaks of queued/in-flight tasks · any 429 whose message names the queued-task
cap (120 queued tasks per account) → CONCURRENCY_FULL ·
`RateLimitExceeded.*` (EndpointRPMExceeded, EndpointTPMExceeded),
`ModelAccountRpmRateLimitExceeded` → RATE_LIMITED · `ServerOverloaded`,
`InternalServiceError`, `InvalidEndpoint.ClosedEndpoint` → TRANSIENT ·
`*SensitiveContentDetected` (InputText…, InputImage…, OutputVideo…) →
CONTENT_REJECTED · `MissingParameter`, `InvalidParameter.*`,
`InvalidEndpointOrModel.NotFound`, `ModelNotOpen` → INVALID.
"""

from __future__ import annotations

from typing import Any, Optional

import httpx

from afd_async.teacher.adapters._http import HttpAdapter, class_for_status, lookup_code, message_hint
from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState, JobStatus, TeacherError

CODES: dict[str, ErrorClass] = {
    "AuthenticationError": ErrorClass.AUTH,
    "AccessDenied": ErrorClass.AUTH,
    "AccountOverdueError": ErrorClass.QUOTA_EXHAUSTED,
    "QuotaExceeded": ErrorClass.QUOTA_EXHAUSTED,
    "SetLimitExceeded": ErrorClass.QUOTA_EXHAUSTED,
    "RateLimitExceeded": ErrorClass.RATE_LIMITED,
    "ModelAccountRpmRateLimitExceeded": ErrorClass.RATE_LIMITED,
    "ModelAccountTpmRateLimitExceeded": ErrorClass.RATE_LIMITED,
    "ServerOverloaded": ErrorClass.TRANSIENT,
    "InternalServiceError": ErrorClass.TRANSIENT,
    "InvalidEndpoint": ErrorClass.TRANSIENT,
    "MissingParameter": ErrorClass.INVALID,
    "InvalidParameter": ErrorClass.INVALID,
    "InvalidEndpointOrModel": ErrorClass.INVALID,
    "ModelNotOpen": ErrorClass.INVALID,
}

STATES = {"queued": JobState.QUEUED, "running": JobState.RUNNING, "succeeded": JobState.SUCCEEDED, "failed": JobState.FAILED,
          "cancelled": JobState.CANCELLED, "expired": JobState.EXPIRED}
TEXT_COMMANDS = ("resolution", "ratio", "duration", "framespersecond", "watermark", "camerafixed")


def classify(code: Optional[str], message: Optional[str], status: Optional[int]) -> ErrorClass:
    """Ark code → class; the queued-task cap is recognised by its message on a 429."""
    if code and code.endswith("SensitiveContentDetected"):
        return ErrorClass.CONTENT_REJECTED
    if (status == 429 or code == "SetLimitExceeded") and message_hint(message) is ErrorClass.CONCURRENCY_FULL:
        return ErrorClass.CONCURRENCY_FULL
    cls = lookup_code(code, CODES)
    if cls is not None:
        return cls
    if status is None:
        return message_hint(message) or ErrorClass.TRANSIENT
    return class_for_status(status)


class SeedanceClient(HttpAdapter):
    """TeacherClient for Seedance video tasks on Ark (provider "volcengine" or "byteplus")."""

    def __init__(self, *, base_url: str, api_key: str, model: str = "", provider: str = "volcengine", timeout_s: float = 30.0, **kw: Any) -> None:
        super().__init__(base_url=base_url, timeout_s=timeout_s, secrets=[api_key], **kw)
        self.provider = provider
        self._api_key = api_key
        self.model = model

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def _error(self, resp: httpx.Response, body: Any) -> TeacherError:
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        code, message = err.get("code"), err.get("message")
        return self._make_error(resp, code, message, classify(code, message, resp.status_code))

    def _text(self, request: JobRequest) -> tuple[str, dict[str, Any]]:
        params = dict(request.params)
        cmds = [f"--seed {request.seed}"] + [f"--{k} {params.pop(k)}" for k in TEXT_COMMANDS if k in params]
        return f"{request.prompt} {' '.join(cmds)}", params

    async def submit(self, request: JobRequest) -> JobHandle:
        text, extra = self._text(request)
        model = request.model or self.model
        body = {"model": model, "content": [{"type": "text", "text": text}], **extra}
        resp = await self._send("POST", "/contents/generations/tasks", json=body, submit=True)
        return JobHandle(provider=self.provider, job_id=str(resp.json()["id"]), model=model)

    async def poll(self, handle: JobHandle) -> JobStatus:
        body = await self._get_json(f"/contents/generations/tasks/{handle.job_id}")
        raw = body.get("status")
        state = STATES.get(raw) if isinstance(raw, str) else None
        if state is None:
            raise self._unknown_status(handle, "status", raw, STATES)
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        cls = classify(err.get("code"), err.get("message"), None) if state is JobState.FAILED else None
        return JobStatus(
            handle=handle,
            state=state,
            result_url=(body.get("content") or {}).get("video_url") if state is JobState.SUCCEEDED else None,
            error_class=cls,
            error_message=self.redact(f"{err.get('code')}: {err.get('message')}") if cls else None,
            usage=dict(body.get("usage") or {}),
        )

    async def cancel(self, handle: JobHandle) -> None:
        await self._send("DELETE", f"/contents/generations/tasks/{handle.job_id}")

    async def recent_jobs(self, *, since: Optional[float] = None, model: str = "", page_size: int = 100) -> list[dict[str, Any]]:
        """Listed tasks (newest first) of this model created at or after `since` (epoch s)."""
        params: dict[str, Any] = {"page_num": 1, "page_size": page_size}
        if model or self.model:
            params["filter.model"] = model or self.model
        body = await self._get_json("/contents/generations/tasks", params=params)
        items = body.get("items") if isinstance(body, dict) else None
        return [i for i in items or [] if since is None or float(i.get("created_at") or 0) >= since - 1.0]

    async def match_listed(self, request: JobRequest, *, since: Optional[float] = None) -> Optional[JobHandle]:
        """The listed task whose echoed text equals this request's; None when none echoes it (not proof of absence)."""
        text, _ = self._text(request)
        model = request.model or self.model
        for item in await self.recent_jobs(since=since, model=model):
            echoed = [c.get("text") for c in item.get("content", []) if isinstance(c, dict)] if isinstance(item.get("content"), list) else []
            if text in echoed:
                return JobHandle(provider=self.provider, job_id=str(item["id"]), model=model)
        return None
