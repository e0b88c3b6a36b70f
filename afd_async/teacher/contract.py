"""The job contract every teacher adapter implements (DESIGN.md §3, issue #4).

A teacher is a black box reached over HTTP: submit a prompt, poll the job,
download the result. Adapters translate each provider's API into this contract
and classify its errors by the provider's own codes, so the gateway can decide
what to retry, what to throttle and what to dead-letter without knowing the
provider.

Call order (one job):

    handle = await client.submit(request)          # may raise TeacherError
    while True:
        status = await client.poll(handle)
        if status.state.terminal: break
        await asyncio.sleep(status.retry_after_s or poll_interval)
    if status.state is JobState.SUCCEEDED:
        data = await client.download(status)        # MP4 bytes
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, runtime_checkable


class JobState(str, enum.Enum):
    """Provider-neutral job states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED)


class ErrorClass(str, enum.Enum):
    """What the gateway does with an error, independent of the provider.

    - RATE_LIMITED: create-rate throttle (429, provider code); back off, retry, shrink rate.
    - CONCURRENCY_FULL: too many in-flight jobs on the account; wait for a slot, retry.
    - TRANSIENT: 5xx, timeouts, connection resets; retry with backoff.
    - QUOTA_EXHAUSTED: account balance/credits gone; stop submitting, alert.
    - CONTENT_REJECTED: moderation refused this prompt; dead-letter the prompt.
    - INVALID: bad request/params; dead-letter, do not retry.
    - AUTH: bad or missing key; stop, alert.
    - CORRUPT_RESULT: result could not be decoded/verified; re-download or dead-letter.
    - EXPIRED_RESULT: result URL expired before download.
    """

    RATE_LIMITED = "rate_limited"
    CONCURRENCY_FULL = "concurrency_full"
    TRANSIENT = "transient"
    QUOTA_EXHAUSTED = "quota_exhausted"
    CONTENT_REJECTED = "content_rejected"
    INVALID = "invalid"
    AUTH = "auth"
    CORRUPT_RESULT = "corrupt_result"
    EXPIRED_RESULT = "expired_result"

    @property
    def retryable(self) -> bool:
        return self in (ErrorClass.RATE_LIMITED, ErrorClass.CONCURRENCY_FULL, ErrorClass.TRANSIENT)


class TeacherError(Exception):
    """A classified teacher failure. Messages never include API keys or auth headers."""

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        retry_after_s: Optional[float] = None,
        provider_code: Optional[str] = None,
        http_status: Optional[int] = None,
    ) -> None:
        super().__init__(f"[{error_class.value}] {message}")
        self.error_class = error_class
        self.retry_after_s = retry_after_s
        self.provider_code = provider_code
        self.http_status = http_status


@dataclass(frozen=True)
class JobRequest:
    """What to generate. `params` are provider-specific extras (resolution, duration, model options)."""

    prompt: str
    seed: int = 0
    model: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobHandle:
    """Enough to poll/cancel a job from any process (it is stored in the journal)."""

    provider: str
    job_id: str
    model: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # provider-specific (e.g. fal status/response URLs)


@dataclass(frozen=True)
class JobStatus:
    """One poll result."""

    handle: JobHandle
    state: JobState
    progress: Optional[float] = None  # 0..1 when the provider reports it
    result_url: Optional[str] = None
    result_bytes: Optional[bytes] = None  # providers that return the video inline
    error_class: Optional[ErrorClass] = None
    error_message: Optional[str] = None
    retry_after_s: Optional[float] = None  # provider's hint for the next poll
    usage: dict[str, Any] = field(default_factory=dict)  # provider-reported usage/cost


@runtime_checkable
class TeacherClient(Protocol):
    """An async adapter for one provider account. Implementations use httpx.AsyncClient."""

    provider: str

    async def submit(self, request: JobRequest) -> JobHandle: ...

    async def poll(self, handle: JobHandle) -> JobStatus: ...

    async def cancel(self, handle: JobHandle) -> None: ...

    async def download(self, status: JobStatus) -> bytes: ...

    async def aclose(self) -> None: ...
