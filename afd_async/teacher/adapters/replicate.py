"""Replicate predictions API (api.replicate.com/v1) adapter.

Written from Replicate's public HTTP API docs and changelog (prediction
deadlines via `Cancel-After`), without live access (no network here); whether
the prediction list echoes `input` is from memory (*unsure*).

Auth: `Authorization: Bearer <REPLICATE_API_TOKEN>`.

- Create: `POST /models/{owner}/{name}/predictions` `{input}` for an official
  model, or `POST /predictions` `{version, input}` when the model is
  `owner/name:version`. Headers: `Cancel-After: <duration>` (default "30m": the
  provider cancels a prediction that outlives it, so a lost job stops costing
  money) and, optionally, `Prefer: wait=<s>`.
- `GET /predictions/{id}` → `{id, status: starting|processing|succeeded|failed|
  canceled|aborted, output, error, urls: {get, cancel}, metrics}` (the statuses of
  replicate.com/docs/topics/predictions/lifecycle). `aborted` (deadline hit before
  it started) reads as CANCELLED; any other status is a TRANSIENT error naming it
  (`HttpAdapter._unknown_status`), never a guess. A create with `Prefer: wait`
  may already answer a finished prediction; `poll` reads it again either way.
- `POST /predictions/{id}/cancel`.
- Webhooks: with a `callback_url` the create carries `webhook` and
  `webhook_events_filter: ["completed"]`; Replicate POSTs the prediction object,
  signed by the Standard Webhooks scheme (`teacher.webhooks`), to that URL.
- `GET /predictions` → `{results: [...], next}` (newest first), used by
  `find_job` to match `input.prompt` and `input.seed`; when listed items carry
  no `input`, the newest (up to 20, after `since`) are read one by one.

Errors (problem JSON `{title, detail, status}`): 401/403 → AUTH · 402 →
QUOTA_EXHAUSTED · 404/422 → INVALID (CONTENT_REJECTED for NSFW/moderation) ·
429 → RATE_LIMITED with the wait from `Retry-After` or the body's
`retry_after` · 5xx → TRANSIENT. A failed prediction's `error` text is
classified by message (NSFW/safety → CONTENT_REJECTED, else TRANSIENT).
Output files of API predictions are deleted after about an hour → EXPIRED_RESULT.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

import httpx

from afd_async.teacher.adapters._http import HttpAdapter, class_for_status, message_hint
from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState, JobStatus, TeacherError

STATES = {"starting": JobState.QUEUED, "processing": JobState.RUNNING, "succeeded": JobState.SUCCEEDED,
          "failed": JobState.FAILED, "canceled": JobState.CANCELLED, "aborted": JobState.CANCELLED}


def _epoch(value: Any) -> float:
    """ISO-8601 `created_at` → epoch seconds (inf when absent, so `since` never drops it)."""
    if not value:
        return float("inf")
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")


def _first_url(output: Any) -> Optional[str]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return next((o for o in output if isinstance(o, str)), None)
    if isinstance(output, dict):
        return _first_url(output.get("video") or output.get("url"))
    return None


class ReplicateClient(HttpAdapter):
    """TeacherClient for Replicate predictions."""

    provider = "replicate"

    def __init__(self, *, base_url: str, api_key: str, model: str, timeout_s: float = 30.0, cancel_after: str = "30m", prefer_wait_s: Optional[int] = None, **kw: Any) -> None:
        if not model:
            raise ValueError("replicate needs model='owner/name' or 'owner/name:version'")
        super().__init__(base_url=base_url, timeout_s=timeout_s, secrets=[api_key], **kw)
        self._api_key = api_key
        self.model = model
        self.cancel_after = cancel_after
        self.prefer_wait_s = prefer_wait_s

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    def _error(self, resp: httpx.Response, body: Any) -> TeacherError:
        body = body if isinstance(body, dict) else {}
        message = body.get("detail") or body.get("title")
        cls, hint = class_for_status(resp.status_code), message_hint(message)
        if resp.status_code in (400, 422) and hint is ErrorClass.CONTENT_REJECTED:
            cls = hint
        elif resp.status_code == 429 and hint is ErrorClass.CONCURRENCY_FULL:
            cls = hint
        err = self._make_error(resp, body.get("title"), message, cls)
        if err.retry_after_s is None and isinstance(body.get("retry_after"), (int, float)):
            err.retry_after_s = float(body["retry_after"])
        return err

    async def submit(self, request: JobRequest) -> JobHandle:
        model = request.model or self.model
        inp = {"prompt": request.prompt, "seed": request.seed, **request.params}
        headers = {"Cancel-After": self.cancel_after}
        hook = {"webhook": self.callback_url, "webhook_events_filter": ["completed"]} if self.callback_url else {}
        if self.prefer_wait_s:
            headers["Prefer"] = f"wait={self.prefer_wait_s}"
        if ":" in model:
            path, body = "/predictions", {"version": model.split(":", 1)[1], "input": inp, **hook}
        else:
            path, body = f"/models/{model}/predictions", {"input": inp, **hook}
        resp = await self._send("POST", path, json=body, headers=headers, submit=True)
        return JobHandle(provider=self.provider, job_id=str(resp.json()["id"]), model=model)

    async def poll(self, handle: JobHandle) -> JobStatus:
        return self._status(handle, await self._get_json(f"/predictions/{handle.job_id}"))

    def callback_job_id(self, body: Any) -> Optional[str]:
        """The prediction id of a webhook body (the prediction object, as `GET /predictions/{id}` returns it)."""
        return str(body["id"]) if isinstance(body, dict) and body.get("id") else None

    def callback_status(self, handle: JobHandle, body: Any) -> Optional[JobStatus]:
        """A signed webhook carries the whole prediction: its status, read like a poll's."""
        return self._status(handle, body)

    def _status(self, handle: JobHandle, body: Any) -> JobStatus:
        raw = body.get("status")
        state = STATES.get(raw) if isinstance(raw, str) else None
        if state is None:
            raise self._unknown_status(handle, "status", raw, STATES)
        error = body.get("error")
        cls, msg = None, None
        if state is JobState.FAILED:
            cls = ErrorClass.CONTENT_REJECTED if message_hint(str(error)) is ErrorClass.CONTENT_REJECTED else ErrorClass.TRANSIENT
            msg = self.redact(str(error))
        elif raw == "aborted":
            msg = "aborted: the Cancel-After deadline passed before the prediction started"
        return JobStatus(
            handle=handle,
            state=state,
            result_url=_first_url(body.get("output")) if state is JobState.SUCCEEDED else None,
            error_class=cls,
            error_message=msg,
            usage=dict(body.get("metrics") or {}),
        )

    async def cancel(self, handle: JobHandle) -> None:
        await self._send("POST", f"/predictions/{handle.job_id}/cancel")

    async def find_job(self, request: JobRequest, *, since: Optional[float] = None, pages: int = 2, max_lookups: int = 20) -> Optional[JobHandle]:
        """The newest live or succeeded prediction whose `input` has this prompt and seed.

        Failed/canceled/aborted ones are skipped: they are earlier attempts, not
        the prediction an ambiguous create may have made.
        """
        url: Optional[str] = "/predictions"
        lookups = 0
        for _ in range(pages):
            if url is None:
                break
            body = await self._get_json(url)
            for p in body.get("results", []) if isinstance(body, dict) else []:
                if since is not None and _epoch(p.get("created_at")) < since - 1.0:
                    continue
                if "input" not in p and lookups < max_lookups:  # a list without inputs: read the prediction itself
                    lookups += 1
                    p = await self._get_json(f"/predictions/{p['id']}")
                inp = p.get("input") or {}
                if p.get("status") in ("failed", "canceled", "aborted"):
                    continue
                if inp.get("prompt") == request.prompt and inp.get("seed", request.seed) == request.seed:
                    return JobHandle(provider=self.provider, job_id=str(p["id"]), model=request.model or self.model)
            nxt = body.get("next") if isinstance(body, dict) else None
            url = nxt if nxt and self._same_origin(nxt) else None
        return None
