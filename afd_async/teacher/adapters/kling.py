"""Kling AI (KlingAI open platform) text-to-video adapter.

Written from Kling's public API docs, without live access (no network here);
details marked *unsure* below are from memory and should be checked against a
real account before production use.

Auth: an HS256 JWT signed with the secret key, claims `iss` = access key,
`exp` = now + 1800 s, `nbf` = now − 5 s; sent as `Authorization: Bearer <jwt>`.
The token is cached and re-signed 5 minutes before it expires.

Endpoints:
- `POST /v1/videos/text2video` `{model_name, prompt, negative_prompt, cfg_scale,
  mode, aspect_ratio, duration, external_task_id}` → `{code, message, request_id,
  data: {task_id, task_status, task_info: {external_task_id}}}`.
  Kling takes no seed: `JobRequest.seed` is not sent.
- `GET /v1/videos/text2video/{task_id}` → `data: {task_status: submitted|
  processing|succeed|failed, task_status_msg, task_result: {videos: [{url, duration}]}}`;
  any other `task_status` is a TRANSIENT error naming it (`HttpAdapter._unknown_status`).
- `GET /v1/videos/text2video?pageNum=&pageSize=` (task list, used by `find_job`
  to match `task_info.external_task_id`, which we set to `request_key(request)`;
  *unsure* of the exact list shape: `data` as a list of tasks).
- No cancel endpoint is documented: `cancel` logs and returns (the task runs on).

Codes (body `code`, on HTTP 200 or an error status):
0 ok · 1000–1004 auth (1004 expired token) → AUTH · 1100 account exception → AUTH ·
1101 arrears, 1102 resource pack exhausted/expired → QUOTA_EXHAUSTED (not
retryable) · 1103 no permission → AUTH · 1200–1203 invalid request/params/method/
resource → INVALID · 1300 platform policy, 1301 content security → CONTENT_REJECTED ·
1302 request rate → RATE_LIMITED · 1303 parallel tasks over the pack's limit →
CONCURRENCY_FULL · 1304 IP allow-list → AUTH · 5000–5002 (and 5xxx) → TRANSIENT.
Failed tasks are classified from `task_status_msg` (risk control → CONTENT_REJECTED,
else TRANSIENT). Result URLs are CDN links that Kling clears after about 30 days.
Callbacks: with a `callback_url` the create carries `callback_url`; Kling POSTs
`{task_id, task_status, ...}` there, unsigned: the receiver accepts only ids this
actor created, on an unguessable path, and the callback only wakes a poll.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import httpx
import jwt

from afd_async.teacher.adapters._http import HttpAdapter, class_for_status, message_hint, request_key
from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState, JobStatus, TeacherError

log = logging.getLogger(__name__)

TOKEN_TTL_S = 1800
NBF_SKEW_S = 5
REFRESH_MARGIN_S = 300

STATES = {"submitted": JobState.QUEUED, "processing": JobState.RUNNING, "succeed": JobState.SUCCEEDED, "failed": JobState.FAILED}


def classify_code(code: int) -> ErrorClass:
    """Kling's numeric business code → ErrorClass."""
    if 1000 <= code <= 1004 or code in (1100, 1103, 1304):
        return ErrorClass.AUTH
    if code in (1101, 1102):
        return ErrorClass.QUOTA_EXHAUSTED
    if 1200 <= code <= 1299:
        return ErrorClass.INVALID
    if code in (1300, 1301):
        return ErrorClass.CONTENT_REJECTED
    if code == 1302:
        return ErrorClass.RATE_LIMITED
    if code == 1303:
        return ErrorClass.CONCURRENCY_FULL
    if code >= 5000:
        return ErrorClass.TRANSIENT
    return ErrorClass.INVALID


def make_token(access_key: str, secret_key: str, *, now: Optional[float] = None) -> str:
    """The HS256 JWT Kling expects (iss = access key, 30 min life, 5 s nbf skew)."""
    now = time.time() if now is None else now
    claims = {"iss": access_key, "exp": int(now) + TOKEN_TTL_S, "nbf": int(now) - NBF_SKEW_S}
    return jwt.encode(claims, secret_key, algorithm="HS256", headers={"alg": "HS256", "typ": "JWT"})


class KlingClient(HttpAdapter):
    """TeacherClient for Kling's `/v1/videos/text2video` task API."""

    provider = "kling"

    def __init__(self, *, base_url: str, access_key: str, secret_key: str, model: str = "kling-v1-6", timeout_s: float = 30.0, **kw: Any) -> None:
        super().__init__(base_url=base_url, timeout_s=timeout_s, secrets=[access_key, secret_key], **kw)
        self._ak, self._sk = access_key, secret_key
        self.model = model or "kling-v1-6"
        self._token: Optional[str] = None
        self._token_exp = 0.0

    def _auth_headers(self) -> dict[str, str]:
        now = time.time()
        if self._token is None or now > self._token_exp - REFRESH_MARGIN_S:
            self._token = make_token(self._ak, self._sk, now=now)
            self._token_exp = now + TOKEN_TTL_S
            self.redact.add(self._token)
        return {"Authorization": f"Bearer {self._token}"}

    def _error(self, resp: httpx.Response, body: Any) -> TeacherError:
        code = body.get("code") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        cls = classify_code(int(code)) if isinstance(code, int) else class_for_status(resp.status_code)
        return self._make_error(resp, None if code is None else str(code), message, cls)

    def _data(self, resp: httpx.Response, body: Any) -> dict[str, Any]:
        """Kling may answer HTTP 200 with a non-zero `code`: treat it as the error it is.

        A 200 without a code or data is a malformed reply, not a verdict on the prompt:
        ValueError, which the adapter base turns into ambiguous (create) or TRANSIENT.
        """
        if isinstance(body, dict) and body.get("code", 0) != 0:
            raise self._error(resp, body)
        if not isinstance(body, dict) or not isinstance(body.get("data"), (dict, list)):
            raise ValueError(f"HTTP {resp.status_code} body without code or data")
        return body

    async def submit(self, request: JobRequest) -> JobHandle:
        params = dict(request.params)
        body = {
            "model_name": request.model or self.model,
            "prompt": request.prompt,
            "duration": str(params.pop("duration", "5")),
            "aspect_ratio": params.pop("aspect_ratio", "16:9"),
            "mode": params.pop("mode", "std"),
            "external_task_id": request_key(request),
            **params,
        }
        if self.callback_url:
            body["callback_url"] = self.callback_url
        resp = await self._send("POST", "/v1/videos/text2video", json=body, submit=True)
        data = self._data(resp, resp.json())["data"]
        return JobHandle(provider=self.provider, job_id=str(data["task_id"]), model=body["model_name"], extra={"external_task_id": body["external_task_id"]})

    def callback_job_id(self, body: Any) -> Optional[str]:
        """The task id of a callback body `{task_id, task_status, task_result, ...}`."""
        return str(body["task_id"]) if isinstance(body, dict) and body.get("task_id") else None

    def callback_status(self, handle: JobHandle, body: Any) -> Optional[JobStatus]:
        """None: Kling's callbacks are unsigned, so one only wakes a poll (its body is not trusted)."""
        return None

    async def poll(self, handle: JobHandle) -> JobStatus:
        body = await self._get_json(f"/v1/videos/text2video/{handle.job_id}")
        if not isinstance(body, dict) or body.get("code", 0) != 0:
            code = body.get("code") if isinstance(body, dict) else None
            raise TeacherError(classify_code(int(code)) if isinstance(code, int) else ErrorClass.TRANSIENT,
                               self.redact(f"kling poll {handle.job_id}: code={code}: {body.get('message') if isinstance(body, dict) else ''}"),
                               provider_code=None if code is None else str(code))
        data = body["data"]
        raw = data.get("task_status")
        state = STATES.get(raw) if isinstance(raw, str) else None
        if state is None:
            raise self._unknown_status(handle, "task_status", raw, STATES)
        videos = (data.get("task_result") or {}).get("videos") or []
        msg = data.get("task_status_msg") or ""
        cls = (message_hint(msg) if message_hint(msg) is ErrorClass.CONTENT_REJECTED else ErrorClass.TRANSIENT) if state is JobState.FAILED else None
        return JobStatus(
            handle=handle,
            state=state,
            result_url=videos[0].get("url") if state is JobState.SUCCEEDED and videos else None,
            error_class=cls,
            error_message=self.redact(msg) if cls else None,
            usage={"duration_s": float(videos[0]["duration"])} if videos and videos[0].get("duration") else {},
        )

    async def cancel(self, handle: JobHandle) -> None:
        log.warning("kling has no cancel endpoint; task %s runs to completion", handle.job_id)

    async def find_job(self, request: JobRequest, *, since: Optional[float] = None, pages: int = 3, page_size: int = 100) -> Optional[JobHandle]:
        """The live or succeeded task whose `external_task_id` is this request's key (newest pages first).

        Failed tasks are skipped: a retry of the same request carries the same key.
        """
        key = request_key(request)
        for page in range(1, pages + 1):
            body = await self._get_json("/v1/videos/text2video", params={"pageNum": page, "pageSize": page_size})
            tasks = body.get("data") if isinstance(body, dict) else None
            if not isinstance(tasks, list) or not tasks:
                return None
            for t in tasks:
                if (t.get("task_info") or {}).get("external_task_id") == key and t.get("task_status") != "failed":
                    return JobHandle(provider=self.provider, job_id=str(t["task_id"]), model=request.model or self.model, extra={"external_task_id": key})
            if len(tasks) < page_size:
                return None
        return None
