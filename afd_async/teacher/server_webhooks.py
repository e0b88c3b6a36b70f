"""The local teacher server's completion webhooks: a signed POST the moment a job ends.

Why: the teacher actor's callback receiver (`teacher.callbacks`) is tested and
benchmarked over the real path, loopback HTTP, against the same signature
scheme Replicate and OpenAI use (Standard Webhooks, `teacher.webhooks`).

A create that carries `webhook=<url>` gets one event when its job completes or
fails (a deleted job gets none), sent from the render thread right after the
state change, so the slot is free at the server before the event leaves:

    POST <url>   webhook-id: evt_<hex>   webhook-timestamp: <unix s>   webhook-signature: v1,<base64>
    {"id": "evt_...", "object": "event", "type": "video.completed" | "video.failed",
     "created_at": <unix s>, "data": <the Video object>}

A delivery answered with anything but 2xx (or not answered) is retried with the
same `webhook-id`, `attempts` times in all, as real senders do; a receiver
treats the repeat as a duplicate. Sent with `http.client` (one keep-alive
connection per render thread and receiver), not httpx, whose request log would
write the URL, and with it the receiver's secret path token, to this server's log.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

from afd_async.config.credentials import Secret
from afd_async.teacher.server_wire import video_object
from afd_async.teacher.webhooks import sign_standard_webhook

if TYPE_CHECKING:
    from afd_async.teacher.server_jobs import Job, JobQueue

__all__ = ["WebhookSender"]

log = logging.getLogger(__name__)


class WebhookSender:
    """Signs and posts completion events (see the module docstring).

    Args:
        secret: the `whsec_...` signing secret (the receiver verifies with the same one).
        attempts: deliveries per event before it is dropped (counted in `counters["dropped"]`).
        retry_wait_s: first pause between deliveries; doubles each time.
        timeout_s: one delivery's HTTP timeout.
    """

    def __init__(self, secret: "str | Secret", *, attempts: int = 4, retry_wait_s: float = 0.05,
                 timeout_s: float = 5.0) -> None:
        sign_standard_webhook(secret, "probe", 0, b"")  # a malformed secret fails here, not at the first job
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self._secret, self.attempts, self.retry_wait_s = secret, attempts, retry_wait_s
        self.timeout_s = timeout_s
        self._conns = threading.local()  # render thread → {(scheme, netloc): connection}
        self._lock = threading.Lock()
        self.counters = {"sent": 0, "retried": 0, "dropped": 0}

    def _bump(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def event(self, queue: "JobQueue", job: "Job") -> tuple[str, bytes]:
        """`(webhook-id, body)` of the job's end event."""
        with queue.lock:
            video = video_object(job, queue.progress(job))
        msg_id = f"evt_{uuid.uuid4().hex}"
        kind = "video.completed" if video["status"] == "completed" else "video.failed"
        body = {"id": msg_id, "object": "event", "type": kind, "created_at": int(time.time()), "data": video}
        return msg_id, json.dumps(body, separators=(",", ":")).encode()

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST on this thread's keep-alive connection to the URL's origin; returns the status."""
        parts = urlsplit(url)
        conns = self._conns.__dict__.setdefault("by_origin", {})
        conn = conns.get((parts.scheme, parts.netloc))
        if conn is None:
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = conns[(parts.scheme, parts.netloc)] = kind(parts.netloc, timeout=self.timeout_s)
        try:
            conn.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except BaseException:
            conn.close()  # reconnects on the next delivery
            raise

    def deliver(self, url: str, msg_id: str, body: bytes) -> bool:
        """POST one event, retrying non-2xx answers; True once a receiver took it."""
        pause = threading.Event()
        wait = self.retry_wait_s
        for attempt in range(self.attempts):
            ts = int(time.time())
            headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
                       "webhook-signature": sign_standard_webhook(self._secret, msg_id, ts, body)}
            try:
                if 200 <= self._post(url, body, headers) < 300:
                    self._bump("sent")
                    return True
            except (OSError, http.client.HTTPException) as e:
                log.info("webhook delivery %s failed: %s", msg_id, type(e).__name__)
            if attempt + 1 < self.attempts:
                self._bump("retried")
                pause.wait(wait)  # a retry delay, as a real sender's backoff
                wait *= 2
        self._bump("dropped")
        return False

    def hook(self, queue: "JobQueue") -> Callable[["Job"], None]:
        """The `JobQueue.on_end` callback that sends `job`'s event to its webhook URL."""

        def on_end(job: "Job") -> None:
            if job.webhook:
                msg_id, body = self.event(queue, job)
                self.deliver(job.webhook, msg_id, body)

        return on_end
