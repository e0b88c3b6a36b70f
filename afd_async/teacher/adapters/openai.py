"""Generic OpenAI-style `/v1/videos` adapter; the local teacher server speaks it.

Contract implemented (the one `afd_async/teacher/server.py` serves, modelled on
OpenAI's public Videos API):

- `POST /v1/videos` JSON `{model, prompt, seed, ...params}` → `{id, status: "queued"}`.
  An `Idempotency-Key` header carries `request_key(request)`; the local server
  answers a repeated key with the existing job, so after an
  `AmbiguousSubmitError` resubmitting the same request cannot create a duplicate.
- `GET /v1/videos/{id}` → `{id, status: queued|in_progress|completed|failed|
  cancelled|expired, progress: 0-100, error: {code, message}}`.
- `GET /v1/videos/{id}/content` → MP4 bytes; 410 once the result has expired.
- `POST /v1/videos/{id}/cancel` (409 when already finished: ignored).
- `GET /v1/videos?limit=N` → `{data: [video, ...]}` (OpenAI list shape), used by
  `find_job`; a server without the list route gets a clear INVALID error.
- Errors: `{"error": {"code", "message", "type"}}`. Codes: `rate_limit` (429,
  Retry-After) vs `concurrency_limit` (429), `content_policy`, plus OpenAI's own
  `insufficient_quota`, `moderation_blocked`, `invalid_api_key`, `server_error`,
  and the local server's `overloaded` (503) and `timeout` (504: ambiguous on create).

OpenAI's hosted API takes multipart form fields (`prompt`, `model`, `seconds`,
`size`) and deletes with `DELETE /v1/videos/{id}`; this adapter targets the
JSON dialect of the local server. Written from public docs, without live access.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import httpx

from afd_async.teacher.adapters._http import (HttpAdapter, class_for_status, lookup_code, message_hint, parse_progress,
                                             request_key)
from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState, JobStatus, TeacherError

CODES: dict[str, ErrorClass] = {
    "rate_limit": ErrorClass.RATE_LIMITED,
    "rate_limit_exceeded": ErrorClass.RATE_LIMITED,
    "concurrency_limit": ErrorClass.CONCURRENCY_FULL,
    "concurrency_limit_exceeded": ErrorClass.CONCURRENCY_FULL,
    "insufficient_quota": ErrorClass.QUOTA_EXHAUSTED,
    "quota_exceeded": ErrorClass.QUOTA_EXHAUSTED,
    "billing_hard_limit_reached": ErrorClass.QUOTA_EXHAUSTED,
    "content_policy": ErrorClass.CONTENT_REJECTED,
    "content_policy_violation": ErrorClass.CONTENT_REJECTED,
    "moderation_blocked": ErrorClass.CONTENT_REJECTED,
    "invalid_api_key": ErrorClass.AUTH,
    "unauthorized": ErrorClass.AUTH,
    "authentication_error": ErrorClass.AUTH,
    "permission_denied": ErrorClass.AUTH,
    "invalid_request": ErrorClass.INVALID,
    "invalid_request_error": ErrorClass.INVALID,
    "invalid_parameter": ErrorClass.INVALID,
    "invalid_value": ErrorClass.INVALID,
    "not_found": ErrorClass.INVALID,
    "server_error": ErrorClass.TRANSIENT,
    "internal_error": ErrorClass.TRANSIENT,
    "overloaded": ErrorClass.TRANSIENT,
    "service_unavailable": ErrorClass.TRANSIENT,
    "timeout": ErrorClass.TRANSIENT,
    "generation_failed": ErrorClass.TRANSIENT,
}

STATES: dict[str, JobState] = {
    "queued": JobState.QUEUED,
    "in_progress": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "expired": JobState.EXPIRED,
}


def classify(code: Optional[str], kind: Optional[str], message: Optional[str], status: Optional[int]) -> ErrorClass:
    """Provider code, then error type, then message hint, then HTTP status."""
    cls = lookup_code(code, CODES) or lookup_code(kind, CODES)
    if cls is None and status == 429:
        cls = message_hint(message) if message_hint(message) in (ErrorClass.CONCURRENCY_FULL, ErrorClass.QUOTA_EXHAUSTED) else None
    if cls is None and status is None:
        cls = message_hint(message) or ErrorClass.TRANSIENT
    return cls or class_for_status(status or 500)


class OpenAIVideosClient(HttpAdapter):
    """TeacherClient for an OpenAI-style `/v1/videos` server (the local teacher by default)."""

    provider = "openai"

    def __init__(self, *, base_url: str, api_key: str = "", model: str = "", timeout_s: float = 30.0, **kw: Any) -> None:
        super().__init__(base_url=base_url, timeout_s=timeout_s, secrets=[api_key], **kw)
        self._api_key = api_key
        self.model = model

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _error(self, resp: httpx.Response, body: Any) -> TeacherError:
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            err = {"message": err} if isinstance(err, str) else {}
        code, kind, message = err.get("code"), err.get("type"), err.get("message")
        return self._make_error(resp, code or kind, message, classify(code, kind, message, resp.status_code))

    def _body(self, request: JobRequest) -> dict[str, Any]:
        return {"model": request.model or self.model, "prompt": request.prompt, "seed": request.seed, **request.params}

    async def submit(self, request: JobRequest) -> JobHandle:
        resp = await self._send("POST", "/v1/videos", json=self._body(request), headers={"Idempotency-Key": request_key(request)}, submit=True)
        body = resp.json()
        return JobHandle(provider=self.provider, job_id=str(body["id"]), model=request.model or self.model)

    def _status(self, handle: JobHandle, body: Mapping[str, Any]) -> JobStatus:
        state = STATES.get(str(body.get("status")), JobState.RUNNING)
        progress = body.get("progress")
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        cls = None
        if state is JobState.FAILED:
            cls = classify(err.get("code"), err.get("type"), err.get("message"), None)
        elif state is JobState.EXPIRED:
            cls = ErrorClass.EXPIRED_RESULT
        return JobStatus(
            handle=handle,
            state=state,
            progress=parse_progress(progress, scale=100.0),
            result_url=f"{self.base_url}/v1/videos/{handle.job_id}/content" if state is JobState.SUCCEEDED else None,
            error_class=cls,
            error_message=self.redact(err.get("message") or err.get("code") or "") or None if cls else None,
            usage=dict(body.get("usage") or {}),
        )

    async def poll(self, handle: JobHandle) -> JobStatus:
        return self._status(handle, await self._get_json(f"/v1/videos/{handle.job_id}"))

    async def cancel(self, handle: JobHandle) -> None:
        """Cancel; a 409 (the job already finished) is not an error: nothing is left to stop."""
        try:
            await self._send("POST", f"/v1/videos/{handle.job_id}/cancel")
        except TeacherError as e:
            if e.http_status != 409:
                raise

    async def find_job(self, request: JobRequest, *, since: Optional[float] = None, limit: int = 100) -> Optional[JobHandle]:
        """The newest live or finished job with this prompt, seed and model, created at or after `since` (epoch s).

        Failed/cancelled/expired jobs are skipped: an earlier attempt's corpse is
        not the job an ambiguous create may have made. None means "not created".
        """
        try:
            body = await self._get_json("/v1/videos", params={"limit": limit, "order": "desc"})
        except TeacherError as e:
            if e.http_status in (404, 405):
                raise TeacherError(ErrorClass.INVALID, f"{self.provider}: this server cannot list jobs; find_job is unavailable", http_status=e.http_status) from None
            raise
        model = request.model or self.model
        for item in body.get("data", []) if isinstance(body, dict) else []:
            if item.get("prompt") != request.prompt or item.get("seed", request.seed) != request.seed:
                continue
            if item.get("status") in ("failed", "cancelled", "expired"):
                continue
            if model and item.get("model") not in (None, "", model):
                continue
            if since is not None and float(item.get("created_at") or 0) < since - 1.0:
                continue
            return JobHandle(provider=self.provider, job_id=str(item["id"]), model=model)
        return None
