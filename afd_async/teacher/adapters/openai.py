"""OpenAI Videos API (`/v1/videos`) adapter; the local teacher server speaks the same API.

Contract implemented, from the API reference (developers.openai.com/api/reference/
resources/videos) and the official SDK's types (`openai/types/video*.py`); the SDK
itself drives both of our servers in tests/integration/test_sdk_openai.py:

- `POST /v1/videos`, multipart/form-data as the SDK sends it (`resources/videos.py`):
  `prompt`, `model`, plus the request's params (`seconds` "4", `size` "720x1280", ...)
  as strings, and `seed` (a local-server extension: the hosted API takes no seed,
  so pass `send_seed=False` there) → the Video object. An `Idempotency-Key` header
  carries `request_key(request)`; the local server answers a repeated key with the
  existing job, so after an `AmbiguousSubmitError` resubmitting the same request
  cannot create a duplicate.
- `GET /v1/videos/{id}` → the Video object (`video.py`): `status` is one of
  queued|in_progress|completed|failed, mapped exhaustively; any other value is a
  TRANSIENT `TeacherError` naming it (logged and counted in `unknown_statuses`; the
  gateway keeps the job and polls again per its retry policy), never a silent
  "running". `progress` is an int 0-100, `seconds` a string ("4"), `size` "WxH";
  `error` is `{code, message}` on failure. A 404 means the video was deleted
  (our own cancel, or by someone else): CANCELLED.
- `GET /v1/videos/{id}/content` → MP4 bytes; 404/410 once the files have expired
  (after `expires_at`; the video still reads `completed`) → EXPIRED_RESULT.
- Cancel is `DELETE /v1/videos/{id}` (the API has no cancel route; the local server
  stops a queued or rendering job, then deletes it); 404 (already gone) is not an error.
- `GET /v1/videos?limit&order&after` → `{data, has_more, last_id}` pages
  (`pagination.py` `ConversationCursorPage`), walked by `find_job`.
- Webhooks: with a `callback_url` the create carries `webhook` (a local-server
  extension: the hosted API sets its webhook endpoint in the dashboard, so point
  that at the actor's receiver and leave `callback_url` unset). Events are
  `{id, object: "event", type: "video.completed"|"video.failed", data}`, signed by
  the Standard Webhooks scheme; the local server puts the whole Video object in
  `data`, the hosted API only its `id` (then the callback wakes one poll).
- Errors: `{"error": {"code", "message", "type", "param"}}`. Codes: `rate_limit`
  (429, Retry-After) vs `concurrency_limit` (429), `content_policy`, plus OpenAI's own
  `insufficient_quota`, `moderation_blocked`, `invalid_api_key`, `server_error`, and
  the local server's `overloaded` (503) and `timeout` (504: ambiguous on create).
"""

from __future__ import annotations

import math
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

# `video.py`: Video.status is Literal["queued", "in_progress", "completed", "failed"]; nothing else exists.
STATES: dict[str, JobState] = {
    "queued": JobState.QUEUED,
    "in_progress": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
}
_FIND_PAGES = 10  # list pages `find_job` reads at most (newest first) before answering "not created"


def classify(code: Optional[str], kind: Optional[str], message: Optional[str], status: Optional[int]) -> ErrorClass:
    """Provider code, then error type, then message hint, then HTTP status."""
    cls = lookup_code(code, CODES) or lookup_code(kind, CODES)
    if cls is None and status == 429:
        cls = message_hint(message) if message_hint(message) in (ErrorClass.CONCURRENCY_FULL, ErrorClass.QUOTA_EXHAUSTED) else None
    if cls is None and status is None:
        cls = message_hint(message) or ErrorClass.TRANSIENT
    return cls or class_for_status(status or 500)


def _usage(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the job bills by: `seconds` of video (a string, "4") and its `size`; unreadable values are left out."""
    out: dict[str, Any] = {}
    try:
        seconds = float(body.get("seconds"))  # type: ignore[arg-type]
        if math.isfinite(seconds) and seconds > 0:
            out["seconds"] = seconds
    except (TypeError, ValueError):
        pass
    if isinstance(body.get("size"), str):
        out["size"] = body["size"]
    return out


class OpenAIVideosClient(HttpAdapter):
    """TeacherClient for the OpenAI Videos API (the local teacher server by default)."""

    provider = "openai"

    def __init__(self, *, base_url: str, api_key: str = "", model: str = "", timeout_s: float = 30.0,
                 send_seed: bool = True, **kw: Any) -> None:
        """See `make_client`; `send_seed=False` leaves out the local server's `seed` field (the hosted API has none)."""
        super().__init__(base_url=base_url, timeout_s=timeout_s, secrets=[api_key], **kw)
        self._api_key = api_key
        self.model = model
        self.send_seed = send_seed

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _error(self, resp: httpx.Response, body: Any) -> TeacherError:
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            err = {"message": err} if isinstance(err, str) else {}
        code, kind, message = err.get("code"), err.get("type"), err.get("message")
        return self._make_error(resp, code or kind, message, classify(code, kind, message, resp.status_code))

    def _fields(self, request: JobRequest) -> dict[str, Any]:
        fields: dict[str, Any] = {"prompt": request.prompt}
        if request.model or self.model:
            fields["model"] = request.model or self.model
        if self.send_seed:
            fields["seed"] = request.seed
        fields.update({k: v for k, v in request.params.items() if v is not None})
        if self.callback_url:
            fields["webhook"] = self.callback_url
        return fields

    async def submit(self, request: JobRequest) -> JobHandle:
        resp = await self._send("POST", "/v1/videos", form=self._fields(request), submit=True,
                                headers={"Idempotency-Key": request_key(request)})
        video = resp.json()
        return JobHandle(provider=self.provider, job_id=str(video["id"]), model=request.model or self.model)

    def _state(self, handle: JobHandle, value: Any) -> JobState:
        """The API's status, exhaustively; anything else is a TRANSIENT error naming it (logged, counted)."""
        state = STATES.get(value) if isinstance(value, str) else None
        if state is None:
            raise self._unknown_status(handle, "status", value, STATES)
        return state

    def _status(self, handle: JobHandle, body: Mapping[str, Any]) -> JobStatus:
        state = self._state(handle, body.get("status"))
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        cls = classify(err.get("code"), err.get("type"), err.get("message"), None) if state is JobState.FAILED else None
        return JobStatus(
            handle=handle,
            state=state,
            progress=parse_progress(body.get("progress"), scale=100.0),
            result_url=f"{self.base_url}/v1/videos/{handle.job_id}/content" if state is JobState.SUCCEEDED else None,
            error_class=cls,
            error_message=self.redact(err.get("message") or err.get("code") or "") or None if cls else None,
            usage=_usage(body),
        )

    async def poll(self, handle: JobHandle) -> JobStatus:
        body = await self._get_job_json(handle, f"/v1/videos/{handle.job_id}", gone="video not found (deleted)")
        return body if isinstance(body, JobStatus) else self._status(handle, body)

    def callback_job_id(self, body: Any) -> Optional[str]:
        """The video id of a webhook event `{type: "video.completed", data: {id, ...}}`."""
        data = body.get("data") if isinstance(body, dict) else None
        return str(data["id"]) if isinstance(data, dict) and data.get("id") else None

    def callback_status(self, handle: JobHandle, body: Any) -> Optional[JobStatus]:
        """The local server's event carries the whole Video object; the hosted API's only the id (None: poll)."""
        data = body.get("data") if isinstance(body, dict) else None
        return self._status(handle, data) if isinstance(data, dict) and "status" in data else None

    async def cancel(self, handle: JobHandle) -> None:
        """`DELETE /v1/videos/{id}`; a 404 (already deleted) is not an error: nothing is left to stop."""
        try:
            await self._send("DELETE", f"/v1/videos/{handle.job_id}")
        except TeacherError as e:
            if e.http_status != 404:
                raise

    async def find_job(self, request: JobRequest, *, since: Optional[float] = None, limit: int = 100) -> Optional[JobHandle]:
        """The newest live or finished job with this prompt, seed and model, created at or after `since` (epoch s).

        Walks the list newest first, `limit` videos a page (`after=last_id`), until
        videos older than `since` or `_FIND_PAGES` pages. Failed jobs are skipped: an
        earlier attempt's corpse is not the job an ambiguous create may have made
        (deleted ones are not listed). A listed video without `seed` (the hosted API)
        matches on prompt and model. None means "not created".
        """
        model = request.model or self.model
        params: dict[str, Any] = {"limit": limit, "order": "desc"}
        for _ in range(_FIND_PAGES):
            try:
                body = await self._get_json("/v1/videos", params=params)
            except TeacherError as e:
                if e.http_status in (404, 405):
                    raise TeacherError(ErrorClass.INVALID, f"{self.provider}: this server cannot list jobs; find_job is unavailable", http_status=e.http_status) from None
                raise
            items = body.get("data", []) if isinstance(body, dict) else []
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict):
                    continue
                if since is not None and float(item.get("created_at") or 0) < since - 1.0:
                    return None  # newest first: the rest is older still
                if item.get("prompt") != request.prompt or item.get("seed", request.seed) != request.seed:
                    continue
                if item.get("status") == "failed" or (model and item.get("model") not in (None, "", model)):
                    continue
                return JobHandle(provider=self.provider, job_id=str(item["id"]), model=model)
            last = body.get("last_id") if isinstance(body, dict) else None
            if not (isinstance(body, dict) and body.get("has_more") and isinstance(last, str) and last):
                return None
            params = {**params, "after": last}
        return None
