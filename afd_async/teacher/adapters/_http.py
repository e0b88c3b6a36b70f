"""Shared HTTP plumbing for teacher adapters: timeouts, retries, hints, redaction.

Why one base: every provider needs the same five things done the same way, and
each done differently would be a bug farm.

- **Submits are never retried here.** A create that timed out may or may not
  have made a job; only the gateway, with its journal, may decide to resubmit.
  A submit that died after the request was sent raises `AmbiguousSubmitError`.
- **GETs are idempotent** (polls, lookups, downloads) and are retried inside the
  adapter with tenacity on TRANSIENT errors only.
- **Hints** come from `Retry-After` (seconds or HTTP-date), `retry-after-ms`
  and `x-ratelimit-reset*` headers, so the gateway can back off precisely.
- **Classification** first asks the adapter (provider codes), then falls back
  to the HTTP status (`class_for_status`).
- **Redaction**: every message an adapter builds goes through `Redactor`, which
  removes the adapter's own secrets and anything shaped like a bearer token,
  JWT or Authorization header. Transport exceptions are re-raised `from None`
  so that no httpx object (which holds request headers) rides along.
"""

from __future__ import annotations

import collections
import email.utils
import contextvars
import functools
import hashlib
import json
import logging
import re
import time
from typing import Any, Iterable, Mapping, Optional
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState, JobStatus, TeacherError

log = logging.getLogger("afd_async.teacher.adapters")

DEFAULT_MAX_BYTES = 512 * 1024 * 1024


class AmbiguousSubmitError(TeacherError):
    """A submit whose outcome is unknown: the request left, no answer came back.

    Always TRANSIENT. The provider may or may not have created the job; before
    resubmitting (and paying twice) the gateway should call the adapter's
    `find_job(request)` where it has one.
    """

    ambiguous = True

    def __init__(self, message: str, *, http_status: Optional[int] = None) -> None:
        super().__init__(ErrorClass.TRANSIENT, message, http_status=http_status)


_TOKEN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(authorization\s*[:=]\s*)(?:(?:bearer|key|token|basic)\s+)?[^\s,;'\"]+"), r"\1***"),
    (re.compile(r"(?i)\b(bearer|key|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}"), "***"),
    (re.compile(r"(?i)((?:api[_-]?key|token|secret|signature|sig)=)[^&\s'\"]+"), r"\1***"),
)


class Redactor:
    """Removes known secrets and token-shaped strings from text."""

    MASK = "***"

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str) -> None:
        """Register a secret value (short values are ignored: masking "a" would mangle text)."""
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for s in self._secrets:
            out = out.replace(s, self.MASK)
        for pat, repl in _TOKEN_PATTERNS:
            out = pat.sub(repl, out)
        return out

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secrets)"


def parse_retry_after(value: Optional[str], *, now: Optional[float] = None) -> Optional[float]:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: Optional[str]) -> Optional[float]:
    """Durations as rate-limit headers write them: "1.5", "20ms", "6m0s", "1h2m3s" → seconds."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def retry_hint(headers: Mapping[str, str], *, now: Optional[float] = None) -> Optional[float]:
    """The provider's back-off hint in seconds, from the most specific header present.

    Order: `Retry-After`, `retry-after-ms`, `x-ratelimit-reset-requests`
    (OpenAI-style duration), `x-ratelimit-reset` (seconds, or an epoch
    timestamp when larger than 1e9).
    """
    ra = parse_retry_after(headers.get("retry-after"), now=now)
    if ra is not None:
        return ra
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    reset = parse_duration(headers.get("x-ratelimit-reset-requests"))
    if reset is not None:
        return reset
    raw = headers.get("x-ratelimit-reset")
    if raw is not None:
        try:
            v = float(raw)
        except ValueError:
            return parse_duration(raw)
        if v > 1e9:
            now = time.time() if now is None else now
            return max(0.0, v - now)
        return max(0.0, v)
    return None


def class_for_status(status: int) -> ErrorClass:
    """Fallback when the provider's body says nothing we recognise."""
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 402:
        return ErrorClass.QUOTA_EXHAUSTED
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status in (408, 409, 425) or status >= 500:
        return ErrorClass.TRANSIENT
    return ErrorClass.INVALID


_HINTS: tuple[tuple[ErrorClass, re.Pattern[str]], ...] = (
    (ErrorClass.CONTENT_REJECTED, re.compile(r"(?i)moderat|safety|nsfw|sensitive|content[ _-]?policy|not allowed|prohibited|risk control")),
    (ErrorClass.QUOTA_EXHAUSTED, re.compile(r"(?i)insufficient (credit|balance|fund)|enough credits|balance|arrear|overdue|billing|exhausted")),
    (ErrorClass.CONCURRENCY_FULL, re.compile(r"(?i)concurren|parallel|in[- ]?flight|queued tasks|queue (is )?full|too many (running|active|pending) ")),
    (ErrorClass.RATE_LIMITED, re.compile(r"(?i)rate[ _-]?limit|too many requests|throttl")),
)


def message_hint(text: Optional[str]) -> Optional[ErrorClass]:
    """A class guessed from free text, for providers whose only signal is a message."""
    if not text:
        return None
    for cls, pat in _HINTS:
        if pat.search(text):
            return cls
    return None


def json_or_none(resp: httpx.Response) -> Any:
    """The body as JSON, or None when it is not JSON (HTML error pages, empty bodies)."""
    try:
        return resp.json()
    except ValueError:
        return None


def parse_progress(value: Any, *, scale: float = 1.0) -> Optional[float]:
    """A provider's progress field as a fraction in [0, 1], or None when it says nothing usable.

    Progress only paces polling, so a value out of range (``-1`` for "unknown", 140 %)
    must not fail the job: it reads as "no progress reported". A value of the wrong
    type is a malformed body like any other (ValueError/TypeError, guarded below).
    """
    if value is None or isinstance(value, bool):
        return None
    p = float(value) / scale
    return p if 0.0 <= p <= 1.0 else None


def short_url(url: str) -> str:
    """scheme://host/path without the query: signed result URLs carry credentials there."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}{p.path}"


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TeacherError) and exc.error_class is ErrorClass.TRANSIENT and not getattr(exc, "ambiguous", False)


# What a parser may raise on a 2xx body of the wrong shape: json/UnicodeDecodeError are ValueErrors.
_PARSE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError)


def _guard_parse(name: str, fn: Any) -> Any:
    """Wrap a contract method so a malformed provider response is a classified `TeacherError`.

    A create answered 2xx with an unreadable body may still have made the job:
    it is an `AmbiguousSubmitError` (the gateway resolves it with `find_job` or
    counts a possible duplicate). Any other call's malformed body is TRANSIENT.
    """

    @functools.wraps(fn)
    async def guarded(self: "HttpAdapter", *args: Any, **kwargs: Any) -> Any:
        try:
            out = await fn(self, *args, **kwargs)
            if name == "submit" and not (isinstance(getattr(out, "job_id", None), str) and out.job_id):
                raise ValueError(f"no job id in the create response (got {getattr(out, 'job_id', None)!r})")
            return out
        except TeacherError:
            raise
        except _PARSE_ERRORS as e:
            msg = self.redact(f"{self.provider} {name}: malformed response ({type(e).__name__}: {str(e)[:120]})")
            if name == "submit":
                raise AmbiguousSubmitError(msg + "; the job may exist (resolve with find_job)") from None
            raise TeacherError(ErrorClass.TRANSIENT, msg) from None

    guarded.__afd_guarded__ = True  # type: ignore[attr-defined]
    return guarded


class HttpAdapter:
    """Base for adapters: one pooled `httpx.AsyncClient`, classified errors, retried GETs.

    Subclasses set `provider`, implement `_auth_headers` and `_error` (provider
    codes), and the four contract methods. Result files are fetched with a
    second client that never carries credentials, unless the result URL lies on
    the API's own origin (e.g. the OpenAI-style `/content` endpoint).
    """

    provider: str = "http"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every adapter's contract methods raise only `TeacherError` (see `_guard_parse`)."""
        super().__init_subclass__(**kwargs)
        for name in ("submit", "poll", "cancel", "find_job", "download"):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "__afd_guarded__", False):
                setattr(cls, name, _guard_parse(name, fn))

    def __init__(
        self,
        *,
        base_url: str,
        timeout_s: float,
        secrets: Iterable[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        get_attempts: int = 3,
        retry_wait_s: float = 0.2,
        headers: Optional[Mapping[str, str]] = None,
        callback_url: Optional[str] = None,
    ) -> None:
        """`callback_url`: where the provider should POST the job's completion (`teacher.callbacks`);
        adapters with a callback scheme send it with each create. It holds an unguessable path
        token, so it is redacted like a secret."""
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 (got {timeout_s}): a call without a deadline can hang an actor")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0 (got {max_bytes})")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.get_attempts = max(1, get_attempts)
        self.retry_wait_s = retry_wait_s
        self.callback_url = callback_url
        self.redact = Redactor([*secrets, *([callback_url] if callback_url else [])])
        # How often each status outside the provider's documented set was seen (`_unknown_status`).
        self.unknown_statuses: collections.Counter[str] = collections.Counter()
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, limits=limits, headers=dict(headers or {}))
        self._files = httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    async def __aenter__(self) -> "HttpAdapter":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._files.aclose()

    # -- to override -------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _error(self, resp: httpx.Response, body: Any) -> TeacherError:
        """Map a non-2xx response to a TeacherError; subclasses read provider codes."""
        return self._make_error(resp, None, None, class_for_status(resp.status_code))

    # -- helpers -----------------------------------------------------------------------

    def _make_error(
        self,
        resp: httpx.Response,
        code: Optional[str],
        message: Optional[str],
        cls: ErrorClass,
    ) -> TeacherError:
        text = (message or resp.reason_phrase or "")[:300]
        where = f"{resp.request.method} {urlsplit(str(resp.request.url)).path}"
        msg = self.redact(f"{self.provider} {where}: HTTP {resp.status_code} code={code}: {text}")
        log.debug("teacher error: %s", msg)
        return TeacherError(
            cls,
            msg,
            retry_after_s=retry_hint(resp.headers),
            provider_code=None if code is None else self.redact(str(code)),
            http_status=resp.status_code,
        )

    def _unknown_status(self, handle: JobHandle, field: str, value: Any, known: Iterable[str]) -> TeacherError:
        """A job status outside the provider's documented values, as a TRANSIENT error naming it.

        Never read as "running": a status the adapter does not know may be a terminal
        one (a paid result, or a failure) that the provider added, and guessing would
        poll a finished job until its timeout. The poll raises this instead; it is
        logged and counted here (`unknown_statuses`), and the gateway counts it like
        every classified error (`afd_teacher_actor_errors_total{error_class="transient"}`),
        polls the same job again with back-off and, if the value persists, ends the
        attempt with this message in the journal and starts the next one per its retry
        policy: the prompt is never dropped.
        """
        msg = self.redact(f"{self.provider}: job {handle.job_id} reports {field}={value!r}, not one of the API's "
                          f"documented values {sorted(known)}; the adapter needs the new value mapped")
        self.unknown_statuses[self.redact(f"{field}={repr(value)[:60]}")] += 1
        log.warning("teacher status unknown: %s", msg)
        return TeacherError(ErrorClass.TRANSIENT, msg, provider_code=self.redact(f"unknown_{field}={str(value)[:60]}"))

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        submit: bool = False,
        form: Optional[Mapping[str, Any]] = None,
    ) -> httpx.Response:
        """One request; classified errors; `submit=True` marks timeouts-after-send ambiguous.

        `form` sends text fields as multipart/form-data (httpx's encoder: a field with
        no file name per value), as SDKs that upload send creates.
        """
        hdrs = {**self._auth_headers(), **(headers or {})}
        files = {k: (None, str(v)) for k, v in form.items()} if form is not None else None
        try:
            resp = await self._client.request(method, url, json=json, params=params, headers=hdrs, files=files)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            raise TeacherError(ErrorClass.TRANSIENT, self.redact(f"{self.provider} {method} {urlsplit(url).path}: {type(e).__name__}: connection not established")) from None
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
            msg = self.redact(f"{self.provider} {method} {urlsplit(url).path}: {type(e).__name__} after the request was sent")
            if submit:
                raise AmbiguousSubmitError(msg + "; the job may exist (resolve with find_job)") from None
            raise TeacherError(ErrorClass.TRANSIENT, msg) from None
        if resp.status_code >= 400:
            err = self._error(resp, json_or_none(resp))
            if submit and resp.status_code == 504:
                raise AmbiguousSubmitError(str(err), http_status=504) from None
            raise err
        return resp

    def _retrying(self) -> AsyncRetrying:
        """The one retry policy of idempotent reads (`_get_json`, `download`).

        TRANSIENT errors only, `get_attempts` tries, jittered exponential waits from `retry_wait_s`
        up to 5 s; the last error is re-raised.
        """
        return AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self.get_attempts),
            wait=wait_exponential_jitter(multiplier=self.retry_wait_s, max=5.0, jitter=self.retry_wait_s),
            reraise=True,
        )

    async def _get_json(self, url: str, *, params: Optional[Mapping[str, Any]] = None) -> Any:
        """GET with tenacity retries on TRANSIENT errors (idempotent, so safe)."""
        async for attempt in self._retrying():
            with attempt:
                resp = await self._send("GET", url, params=params)
                body = json_or_none(resp)
                if body is None:
                    raise TeacherError(ErrorClass.TRANSIENT, f"{self.provider} GET {urlsplit(url).path}: body is not JSON", http_status=resp.status_code)
                return body
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get_job_json(self, handle: JobHandle, url: str, *, gone: str) -> Any:
        """The job's status body, or a CANCELLED `JobStatus` saying `gone` when the provider answers 404
        (a deleted job: nothing is left to poll); other errors propagate."""
        try:
            return await self._get_json(url)
        except TeacherError as e:
            if e.http_status == 404:
                return JobStatus(handle=handle, state=JobState.CANCELLED, error_message=gone)
            raise

    def _same_origin(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.base_url)
        return not a.netloc or (a.scheme, a.netloc) == (b.scheme, b.netloc)

    async def download(self, status: JobStatus) -> bytes:
        """The result as bytes, streamed with a `max_bytes` cap.

        403/404/410 from a result URL mean the signed link has lapsed
        (EXPIRED_RESULT): poll again for a fresh URL or resubmit. Credentials
        are sent only to the API's own origin, never to a CDN.
        """
        if status.result_bytes is not None:
            return status.result_bytes
        if not status.result_url:
            raise TeacherError(ErrorClass.CORRUPT_RESULT, f"{self.provider}: job {status.handle.job_id} has no result URL (state {status.state.value})")
        async for attempt in self._retrying():
            with attempt:
                return await self._download_once(status.result_url)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _download_once(self, url: str) -> bytes:
        own = self._same_origin(url)
        client = self._client if own else self._files
        headers = self._auth_headers() if own else {}
        where = self.redact(f"{self.provider} download {short_url(url) if not own else urlsplit(url).path}")
        try:
            async with client.stream("GET", url, headers=headers) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    code = resp.status_code
                    if code in (404, 410) or (code == 403 and not own):
                        raise TeacherError(ErrorClass.EXPIRED_RESULT, f"{where}: HTTP {code}: result URL expired or gone", http_status=code)
                    raise TeacherError(class_for_status(code), f"{where}: HTTP {code}", http_status=code, retry_after_s=retry_hint(resp.headers))
                declared = resp.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                    raise TeacherError(ErrorClass.CORRUPT_RESULT, f"{where}: result is {declared} bytes, over max_bytes={self.max_bytes}")
                buf = bytearray()
                async for chunk in resp.aiter_bytes():
                    buf += chunk
                    if len(buf) > self.max_bytes:
                        raise TeacherError(ErrorClass.CORRUPT_RESULT, f"{where}: result exceeds max_bytes={self.max_bytes}")
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
            raise TeacherError(ErrorClass.TRANSIENT, f"{where}: {type(e).__name__}") from None
        if not buf:
            raise TeacherError(ErrorClass.CORRUPT_RESULT, f"{where}: empty result body")
        return bytes(buf)


# The gateway's attempt number for the job being submitted (0 for the first). A fresh
# attempt after a failed or broken job must be a *new* provider job, so every
# adapter's idempotency key / external task id carries it. Set by the gateway per job
# (`TeacherGateway.run_job`); asyncio tasks started inside inherit it.
CURRENT_ATTEMPT: contextvars.ContextVar[int] = contextvars.ContextVar("afd_teacher_attempt", default=0)


def request_key(request: JobRequest) -> str:
    """A stable id for one attempt at one logical request (prompt, seed, model, params).

    Sent as an idempotency key / external task id where the provider takes one,
    so `find_job` can recognise the job an ambiguous submit may have created;
    attempt n > 0 (see `CURRENT_ATTEMPT`) gets `-a{n}`, so it never matches an
    earlier attempt's job.
    """
    blob = json.dumps([request.prompt, request.seed, request.model, request.params], sort_keys=True, default=str)
    key = "afd-" + hashlib.sha256(blob.encode()).hexdigest()[:28]
    n = CURRENT_ATTEMPT.get()
    return key if n == 0 else f"{key}-a{n}"


def lookup_code(code: Optional[str], table: Mapping[str, ErrorClass]) -> Optional[ErrorClass]:
    """Exact match first, then the longest dotted prefix ("RateLimitExceeded.EndpointRPMExceeded")."""
    if not code:
        return None
    if code in table:
        return table[code]
    parts = code.split(".")
    for i in range(len(parts) - 1, 0, -1):
        hit = table.get(".".join(parts[:i]))
        if hit is not None:
            return hit
    return None
