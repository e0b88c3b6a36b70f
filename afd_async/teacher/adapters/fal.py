"""fal.ai queue API (queue.fal.run) adapter.

Written from fal's public queue docs (docs.fal.ai, "Queue" and "Request errors")
and the official client (fal-client 1.0.3, `fal_client/client.py`), without live
access (no network here); what a cancelled request's status shows is *unsure*
(read as COMPLETED with `error_type: client_cancelled`, see below).

Auth: `Authorization: Key <FAL_KEY>`. The app id is the model, e.g.
`fal-ai/kling-video/v2/master/text-to-video`.

- `POST https://queue.fal.run/{app}` with the model input `{prompt, seed, ...}` →
  `{request_id, status_url, response_url, cancel_url}`; the three URLs are kept
  in `JobHandle.extra` (they drop the app's sub-path, so they are not rebuilt).
- `GET {status_url}` → `{status: IN_QUEUE|IN_PROGRESS|COMPLETED, queue_position, logs,
  metrics, error, error_type}`. Those three statuses are all there are (fal-client
  raises on any other); another value is a TRANSIENT error naming it
  (`HttpAdapter._unknown_status`). A COMPLETED request may have ended in an error:
  `error_type: client_cancelled` reads as CANCELLED, `bad_request` as INVALID,
  `content_policy_violation` (or a moderation message) as CONTENT_REJECTED, the
  runner/timeout types of the request-errors page as TRANSIENT.
- `GET {response_url}` once COMPLETED → the model output, e.g. `{video: {url}}`;
  a failed run answers an error status here (422 `{"detail": [{"type", "msg"}]}`,
  or a request error `{"detail": "...", "error_type": "..."}`).
- `PUT {cancel_url}` → 202 `CANCELLATION_REQUESTED` (400 `ALREADY_COMPLETED`).
- No request listing: no `find_job`.
- Webhooks: with a `callback_url` the create carries `?fal_webhook=<url>`; fal
  POSTs `{request_id, status, payload}` signed with ED25519 (`teacher.webhooks.FalVerifier`,
  keys from a saved JWKS file); the callback only wakes a poll.

The key goes only to the queue host: a status/response URL on another origin
is refused (INVALID). Errors: 401/403 → AUTH (QUOTA_EXHAUSTED when the message
says the balance is exhausted / user locked) · 422 → INVALID, CONTENT_REJECTED
for `content_policy_violation` · 429 → RATE_LIMITED (CONCURRENCY_FULL when it
names concurrency) · 5xx → TRANSIENT.
"""

from __future__ import annotations

from typing import Any, Optional

import httpx

from afd_async.teacher.adapters._http import HttpAdapter, class_for_status, message_hint
from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState, JobStatus, TeacherError

STATES = {"IN_QUEUE": JobState.QUEUED, "IN_PROGRESS": JobState.RUNNING, "COMPLETED": JobState.SUCCEEDED}
CANCELLED_TYPE = "client_cancelled"


def _detail(body: Any) -> tuple[Optional[str], Optional[str]]:
    """(type, message) from fal's `detail`, which is a string or a list of validation errors."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return detail[0].get("type"), detail[0].get("msg")
    if isinstance(detail, str):
        kind = body.get("error_type")
        return (kind if isinstance(kind, str) else None), detail
    return None, (body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None)


class FalClient(HttpAdapter):
    """TeacherClient for one fal app through the queue API."""

    provider = "fal"

    def __init__(self, *, base_url: str, api_key: str, model: str, timeout_s: float = 30.0, **kw: Any) -> None:
        if not model:
            raise ValueError("fal needs model= the app id, e.g. 'fal-ai/kling-video/v2/master/text-to-video'")
        super().__init__(base_url=base_url, timeout_s=timeout_s, secrets=[api_key], **kw)
        self._api_key = api_key
        self.model = model

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._api_key}"}

    def _failure_class(self, kind: Optional[str], message: str) -> ErrorClass:
        """A COMPLETED request's `error_type`/`error` → class (request errors are mostly infrastructure)."""
        if kind == "content_policy_violation" or message_hint(message) is ErrorClass.CONTENT_REJECTED:
            return ErrorClass.CONTENT_REJECTED
        return ErrorClass.INVALID if kind == "bad_request" else ErrorClass.TRANSIENT

    def _classify(self, status: int, kind: Optional[str], message: Optional[str]) -> ErrorClass:
        hint = message_hint(message) or message_hint(kind)
        if kind == "content_policy_violation" or (status in (400, 422) and hint is ErrorClass.CONTENT_REJECTED):
            return ErrorClass.CONTENT_REJECTED
        if status in (401, 402, 403) and hint is ErrorClass.QUOTA_EXHAUSTED:
            return ErrorClass.QUOTA_EXHAUSTED
        if status == 429 and hint is ErrorClass.CONCURRENCY_FULL:
            return hint
        return class_for_status(status)

    def _error(self, resp: httpx.Response, body: Any) -> TeacherError:
        kind, message = _detail(body)
        return self._make_error(resp, kind, message, self._classify(resp.status_code, kind, message))

    def _url(self, handle: JobHandle, key: str, suffix: str) -> str:
        url = handle.extra.get(key) or f"{self.base_url}/{handle.model or self.model}/requests/{handle.job_id}{suffix}"
        if not self._same_origin(url):
            raise TeacherError(ErrorClass.INVALID, f"fal: {key} is not on {self.base_url}; refusing to send the key there")
        return url

    async def submit(self, request: JobRequest) -> JobHandle:
        app = request.model or self.model
        body = {"prompt": request.prompt, "seed": request.seed, **request.params}
        hook = {"fal_webhook": self.callback_url} if self.callback_url else None
        resp = await self._send("POST", f"/{app}", json=body, params=hook, submit=True)
        data = resp.json()
        extra = {k: str(data[k]) for k in ("status_url", "response_url", "cancel_url") if data.get(k)}
        return JobHandle(provider=self.provider, job_id=str(data["request_id"]), model=app, extra=extra)

    def callback_job_id(self, body: Any) -> Optional[str]:
        """The request id of a webhook body `{request_id, gateway_request_id, status: OK|ERROR, payload}`."""
        return str(body["request_id"]) if isinstance(body, dict) and body.get("request_id") else None

    def callback_status(self, handle: JobHandle, body: Any) -> Optional[JobStatus]:
        """None: the callback wakes one poll, which reads the status and the result as the queue API reports them."""
        return None

    async def poll(self, handle: JobHandle) -> JobStatus:
        body = await self._get_json(self._url(handle, "status_url", "/status"))
        raw = body.get("status")
        state = STATES.get(raw) if isinstance(raw, str) else None
        if state is None:
            raise self._unknown_status(handle, "status", raw, STATES)
        if state is not JobState.SUCCEEDED:
            return JobStatus(handle=handle, state=state)
        kind = body.get("error_type") if isinstance(body.get("error_type"), str) else None
        if kind or body.get("error"):
            message = self.redact(f"{kind}: {body.get('error') or ''}")
            if kind == CANCELLED_TYPE:
                return JobStatus(handle=handle, state=JobState.CANCELLED, error_message=message)
            return JobStatus(handle=handle, state=JobState.FAILED, error_class=self._failure_class(kind, message), error_message=message)
        try:
            result = await self._get_json(self._url(handle, "response_url", ""))
        except TeacherError as e:
            if e.provider_code == CANCELLED_TYPE:
                return JobStatus(handle=handle, state=JobState.CANCELLED, error_message=str(e))
            if e.error_class in (ErrorClass.TRANSIENT, ErrorClass.AUTH, ErrorClass.RATE_LIMITED):
                raise
            return JobStatus(handle=handle, state=JobState.FAILED, error_class=e.error_class, error_message=str(e))
        video = result.get("video") if isinstance(result, dict) else None
        url = video.get("url") if isinstance(video, dict) else None
        if not url:
            return JobStatus(handle=handle, state=JobState.FAILED, error_class=ErrorClass.CORRUPT_RESULT, error_message="fal: response has no video.url")
        return JobStatus(handle=handle, state=state, progress=1.0, result_url=url)

    async def cancel(self, handle: JobHandle) -> None:
        try:
            await self._send("PUT", self._url(handle, "cancel_url", "/cancel"))
        except TeacherError as e:
            if e.http_status != 400:  # 400 = ALREADY_COMPLETED: nothing left to cancel
                raise
