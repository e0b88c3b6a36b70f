"""Luma Dream Machine API (api.lumalabs.ai/dream-machine/v1) adapter.

Written from Luma's public API docs and the official SDK (lumaai 1.21, whose
`generations.create` posts `/generations/video`), without live access (no network
here); error bodies and the exact moderation wording are from memory (*unsure*).

Endpoints (Bearer auth):
- `POST /generations/video` `{prompt, model, aspect_ratio, duration, resolution, ...}`
  → 201 generation `{id, generation_type, model, state: queued|dreaming|completed|failed,
  failure_reason, assets: {video}, request: {...}, created_at}`. Luma takes no seed.
  Any other `state` is a TRANSIENT error naming it (`HttpAdapter._unknown_status`).
- `GET /generations/{id}`; `DELETE /generations/{id}` (deletes: Luma has no
  cancelled state, so a 404 on a later poll reads as CANCELLED).
- `GET /generations?limit&offset` → `{generations: [...], has_more}`; each item
  echoes its `request` (prompt, model), which `find_job` matches.
- Callbacks: with a `callback_url` the create carries `callback_url`; Luma POSTs the
  generation object there on each state change, unsigned: the receiver accepts only
  ids this actor created, on an unguessable path, and the callback only wakes a poll.

Errors carry only a message (`{"detail": "..."}`), so classes come from the
status plus the message: 400/422 → INVALID, or CONTENT_REJECTED for moderation
("not allowed", "moderation"), QUOTA_EXHAUSTED for credits · 401/403 → AUTH ·
402 → QUOTA_EXHAUSTED · 429 → RATE_LIMITED, CONCURRENCY_FULL when it names
concurrent/parallel generations · 5xx → TRANSIENT. A failed generation is
classified from `failure_reason` (moderation → CONTENT_REJECTED, else TRANSIENT).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

import httpx

from afd_async.teacher.adapters._http import HttpAdapter, class_for_status, message_hint
from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState, JobStatus, TeacherError

STATES = {"queued": JobState.QUEUED, "dreaming": JobState.RUNNING, "completed": JobState.SUCCEEDED, "failed": JobState.FAILED}


def _epoch(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class LumaClient(HttpAdapter):
    """TeacherClient for Luma's generations API."""

    provider = "luma"

    def __init__(self, *, base_url: str, api_key: str, model: str = "ray-2", timeout_s: float = 30.0, **kw: Any) -> None:
        super().__init__(base_url=base_url, timeout_s=timeout_s, secrets=[api_key], **kw)
        self._api_key = api_key
        self.model = model or "ray-2"

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def _error(self, resp: httpx.Response, body: Any) -> TeacherError:
        detail = body.get("detail") if isinstance(body, dict) else None
        message = detail if isinstance(detail, str) else (str(detail) if detail else None)
        cls, hint = class_for_status(resp.status_code), message_hint(message)
        if resp.status_code in (400, 422) and hint in (ErrorClass.CONTENT_REJECTED, ErrorClass.QUOTA_EXHAUSTED):
            cls = hint
        elif resp.status_code == 429 and hint is ErrorClass.CONCURRENCY_FULL:
            cls = hint
        return self._make_error(resp, None, message, cls)

    async def submit(self, request: JobRequest) -> JobHandle:
        body = {"prompt": request.prompt, "model": request.model or self.model, **request.params}
        if self.callback_url:
            body["callback_url"] = self.callback_url
        resp = await self._send("POST", "/generations/video", json=body, submit=True)
        return JobHandle(provider=self.provider, job_id=str(resp.json()["id"]), model=body["model"])

    def callback_job_id(self, body: Any) -> Optional[str]:
        """The generation id of a callback body (the generation object)."""
        return str(body["id"]) if isinstance(body, dict) and body.get("id") else None

    def callback_status(self, handle: JobHandle, body: Any) -> Optional[JobStatus]:
        """None: Luma's callbacks are unsigned, so one only wakes a poll (its body is not trusted)."""
        return None

    async def poll(self, handle: JobHandle) -> JobStatus:
        body = await self._get_job_json(handle, f"/generations/{handle.job_id}", gone="generation not found (deleted)")
        if isinstance(body, JobStatus):
            return body
        raw = body.get("state")
        state = STATES.get(raw) if isinstance(raw, str) else None
        if state is None:
            raise self._unknown_status(handle, "state", raw, STATES)
        reason = body.get("failure_reason") or ""
        cls = (ErrorClass.CONTENT_REJECTED if message_hint(reason) is ErrorClass.CONTENT_REJECTED else ErrorClass.TRANSIENT) if state is JobState.FAILED else None
        return JobStatus(
            handle=handle,
            state=state,
            result_url=(body.get("assets") or {}).get("video") if state is JobState.SUCCEEDED else None,
            error_class=cls,
            error_message=self.redact(reason) if cls else None,
        )

    async def cancel(self, handle: JobHandle) -> None:
        await self._send("DELETE", f"/generations/{handle.job_id}")

    async def find_job(self, request: JobRequest, *, since: Optional[float] = None, limit: int = 100) -> Optional[JobHandle]:
        """The newest queued/dreaming/completed generation whose echoed request has this prompt and model.

        Luma takes no seed, so two requests differing only in seed are the same
        generation to it. Failed generations are skipped (an earlier attempt's).
        """
        body = await self._get_json("/generations", params={"limit": limit, "offset": 0})
        model = request.model or self.model
        for g in body.get("generations", []) if isinstance(body, dict) else []:
            req = g.get("request") or {}
            if req.get("prompt") != request.prompt or req.get("model", model) != model or g.get("state") == "failed":
                continue
            if since is not None and _epoch(g.get("created_at")) < since - 1.0:
                continue
            return JobHandle(provider=self.provider, job_id=str(g["id"]), model=model)
        return None
