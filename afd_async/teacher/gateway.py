"""The per-actor teacher loop: journal + shared quota + provider client + clip cache.

One job (`TeacherGateway.run_job`), every step bounded by a timeout:

    cache hit? → return it
    for attempt in 0..max_attempts-1:              # a new attempt only after a terminal failure
        claim journal record (ClaimBusy → JobDeferred)
        record "submitted"  → adopt a lease, resume polling by job id (never resubmit)
        record "submitting" → ambiguous create: find_job() or wait out the ambiguity timeout
        else: quota.acquire (rate token + lease) → journal "submitting" → client.submit
              (tenacity retries RATE_LIMITED / CONCURRENCY_FULL / TRANSIENT; throttles feed the
              quota's AIMD and pause) → journal "submitted" (job id) → quota.on_success
        poll with backoff, or with callbacks wait on the job's mailbox and poll only as the
              fallback (lease and claim heartbeats run meanwhile) → release lease at terminal
        SUCCEEDED → download at once → decode/verify (re-download on CORRUPT_RESULT)
                  → cache.put → journal "done"; downloads still failing TRANSIENT → JobDeferred,
                  the record stays "submitted" (the paid result is fetched on resume, not re-bought)
        FAILED/EXPIRED/CANCELLED, EXPIRED_RESULT → journal "failed", next attempt
        CONTENT_REJECTED / INVALID → dead-letter stream, JobDeadLettered
        persistent CORRUPT_RESULT → dead-letter (`corrupt_result="dead_letter"`) or a fresh
                  job (`"new_job"`: a truncated or wrong-length video says nothing about the prompt)
    all attempts failed → JobFailed, or (`exhausted="dead_letter"`) one "attempts_exhausted"
                  dead-letter entry, so no prompt ever just vanishes
        AUTH / QUOTA_EXHAUSTED → account alert, GatewayHalted (this gateway takes no more prompts)

Invariants: at most one create per (request, attempt) unless an ambiguous create
is resolved by timeout (counted as a possible duplicate); a job whose id is
recorded is only ever polled; a cancelled job leaves the journal resumable.

Many jobs at once (a worker pool with drain-on-stop): `gateway_run.run_many`, which
builds on this module; the outcome exceptions live in `gateway_errors`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Awaitable, Callable, Literal, Optional, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from afd_async import metrics as M
from afd_async.teacher.cache import CacheEntry, TeacherCache, TeacherMeta
from afd_async.teacher.adapters._http import CURRENT_ATTEMPT
from afd_async.teacher.callbacks import CallbackReceiver
from afd_async.teacher.contract import ErrorClass, JobHandle, JobRequest, JobState, JobStatus, TeacherClient, TeacherError
from afd_async.teacher.gateway_errors import (GatewayHalted, JobDeadLettered, JobDeferred, JobFailed, _AttemptFailed,
                                              _Resolved)
from afd_async.teacher.journal import Claim, ClaimBusy, ClaimLost, SubmitJournal
from afd_async.teacher.quota import Lease, QuotaTimeout, SharedQuota
from afd_async.video.clip import Clip

if TYPE_CHECKING:
    from afd_async.metrics import RoleLabels

log = logging.getLogger(__name__)
T = TypeVar("T")
_DEAD = (ErrorClass.CONTENT_REJECTED, ErrorClass.INVALID, ErrorClass.CORRUPT_RESULT)
_HALT = (ErrorClass.AUTH, ErrorClass.QUOTA_EXHAUSTED)
_THROTTLE = (ErrorClass.RATE_LIMITED, ErrorClass.CONCURRENCY_FULL)
_LOOKUP_MARGIN_S = 300.0  # look for an ambiguous create this far before it began (clock skew)


class TeacherGateway:
    """Drives teacher jobs for one actor. All collaborators are injected.

    Args:
        client: the provider adapter; may also offer
            `async find_job(request, *, since: float | None) -> JobHandle | None` (jobs created after
            `since`, epoch seconds), which resolves ambiguous creates without duplicates.
        decode: MP4 bytes → verified, resampled `Clip`; raise `TeacherError(CORRUPT_RESULT)` (or any
            exception) on bad data.
        acquire_timeout_s: longest wait for a quota admission before the job is deferred.
        claim_wait_s: how long to wait for another actor's claim to lapse.
        submit_attempts: tries per create for retryable classes (exponential backoff with jitter).
        poll_interval_s / poll_max_interval_s: poll backoff (×1.5 per poll), overridden by a
            provider's `retry_after_s`.
        job_timeout_s: a job not terminal after this long is cancelled and its attempt fails.
        download_attempts: tries per download (TRANSIENT, CORRUPT_RESULT).
        max_attempts: fresh jobs per request after terminal failures.
        call_timeout_s: timeout of each provider call.
        corrupt_result: what an undecodable result (after `download_attempts`) means:
            "dead_letter" (the prompt is poison) or "new_job" (the render was bad; try again).
        exhausted: after `max_attempts` failed jobs, "raise" `JobFailed` or "dead_letter"
            the request (once, `error_class` "attempts_exhausted") and raise `JobDeadLettered`.
        metrics: the teacher actor's `RoleLabels`; job events, errors, latencies and bytes
            go to the declared `afd_teacher_actor_*` series. None: counters only.
        callbacks: the actor's `CallbackReceiver`: a job waits for its completion callback, which frees
            the lease the moment the provider reports the end, not at the next poll. None: polling only.
        callback_poll_s: with callbacks, the fallback poll period (what a lost callback costs at most).
    """

    def __init__(
        self,
        client: TeacherClient,
        quota: SharedQuota,
        journal: SubmitJournal,
        cache: TeacherCache,
        decode: Callable[[bytes], Clip],
        *,
        acquire_timeout_s: float = 300.0,
        claim_wait_s: float = 0.0,
        submit_attempts: int = 8,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        poll_interval_s: float = 2.0,
        poll_max_interval_s: float = 15.0,
        job_timeout_s: float = 1800.0,
        download_attempts: int = 3,
        max_attempts: int = 3,
        call_timeout_s: float = 60.0,
        corrupt_result: Literal["dead_letter", "new_job"] = "dead_letter",
        exhausted: Literal["raise", "dead_letter"] = "raise",
        metrics: Optional["RoleLabels"] = None,
        callbacks: Optional[CallbackReceiver] = None,
        callback_poll_s: float = 30.0,
    ) -> None:
        if min(submit_attempts, download_attempts, max_attempts) < 1:
            raise ValueError("submit_attempts, download_attempts and max_attempts must be >= 1")
        self.client, self.quota, self.journal, self.cache, self.decode = client, quota, journal, cache, decode
        self.provider = client.provider
        self.acquire_timeout_s, self.claim_wait_s = acquire_timeout_s, claim_wait_s
        self.submit_attempts, self.retry_initial_s, self.retry_max_s = submit_attempts, retry_initial_s, retry_max_s
        self.poll_interval_s, self.poll_max_interval_s = poll_interval_s, poll_max_interval_s
        self.job_timeout_s, self.download_attempts, self.max_attempts = job_timeout_s, download_attempts, max_attempts
        self.call_timeout_s = call_timeout_s
        if corrupt_result not in ("dead_letter", "new_job") or exhausted not in ("raise", "dead_letter"):
            raise ValueError(f"bad corrupt_result={corrupt_result!r} or exhausted={exhausted!r}")
        self.corrupt_result, self.exhausted = corrupt_result, exhausted
        self.metrics = metrics
        if callback_poll_s <= 0:
            raise ValueError(f"callback_poll_s must be > 0 (it bounds the wait for a lost callback), got {callback_poll_s}")
        self.callbacks, self.callback_poll_s = callbacks, callback_poll_s
        self.halted: Optional[TeacherError] = None
        self.counters: dict[str, int] = {}
        self._stop = asyncio.Event()

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n
        if self.metrics is None:
            return
        event = _EVENTS.get(name)
        if event is not None:
            self.metrics(M.TEACHER_ACTOR_JOBS, state=event).inc(n)
        callback = _CALLBACKS.get(name)
        if callback is not None:
            self.metrics(M.TEACHER_ACTOR_CALLBACKS, outcome=callback).inc(n)
        if name == "done":
            self.metrics(M.TEACHER_ACTOR_CLIPS).inc(n)
        elif name == "throttled":
            self.metrics(M.TEACHER_ACTOR_THROTTLED).inc(n)

    def _error(self, e: TeacherError) -> None:
        """Count a classified provider error (metrics only)."""
        if self.metrics is not None:
            self.metrics(M.TEACHER_ACTOR_ERRORS, error_class=e.error_class.value).inc()

    def _observe(self, phase: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics(M.TEACHER_ACTOR_LATENCY, phase=phase).observe(max(0.0, seconds))

    def _in_flight(self, delta: int) -> None:
        if self.metrics is not None:
            self.metrics(M.TEACHER_ACTOR_IN_FLIGHT).inc(delta)

    async def _call(self, aw: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(aw, self.call_timeout_s)
        except asyncio.TimeoutError:
            raise TeacherError(ErrorClass.TRANSIENT, f"provider call timed out after {self.call_timeout_s}s") from None

    # ------------------------------------------------------------------ one job
    async def run_job(self, request: JobRequest) -> CacheEntry:
        """Produce the teacher clip for `request` (see the module docstring for the protocol)."""
        if self.halted is not None:
            raise GatewayHalted(str(self.halted))
        hit = await self.cache.get(self.provider, request)
        if hit is not None:
            self._count("cache_hits")
            return hit
        last_reason = ""
        stale: set[str] = set()  # job ids of failed attempts: a lookup must never adopt one of them
        for attempt in range(self.max_attempts):
            CURRENT_ATTEMPT.set(attempt)
            key = self.journal.key(self.provider, request, attempt)
            try:
                claim = await self.journal.claim(key, wait_s=self.claim_wait_s)
            except ClaimBusy as e:
                self._count("deferred")
                raise JobDeferred(str(e)) from None
            async with claim:
                st = claim.record.state
                if st == "dead":
                    raise JobDeadLettered("dead", claim.record.reason)
                if st == "done":
                    hit = await self.cache.get(self.provider, request)
                    if hit is not None:
                        return hit
                    continue  # the clip expired from the cache: a fresh attempt
                if st == "failed":
                    if claim.record.handle is not None:
                        stale.add(claim.record.handle.job_id)
                    continue
                try:
                    return await self._attempt(claim, request, frozenset(stale))
                except ClaimLost as e:  # presumed dead by another actor, which now owns the job
                    self._count("deferred")
                    raise JobDeferred(str(e)) from None
                except _AttemptFailed as e:
                    log.info("teacher job %s attempt %d failed: %s", key, attempt, e)
                    await self.journal.finish(key, "failed", reason=str(e))
                    self._count("attempts_failed")
                    last_reason = str(e)
                    failed = await self.journal.get(key)
                    if failed.handle is not None:
                        stale.add(failed.handle.job_id)
        msg = f"{self.provider}: {self.max_attempts} attempts failed for prompt {request.prompt[:60]!r}"
        if self.exhausted == "dead_letter":
            rec = await self.journal.get(self.journal.key(self.provider, request, self.max_attempts - 1))
            reason = last_reason or rec.reason or msg
            if await self.journal.give_up(self.provider, request, attempts=self.max_attempts, reason=reason):
                self._count("dead")
            raise JobDeadLettered("attempts_exhausted", reason)
        raise JobFailed(msg)

    async def _attempt(self, claim: Claim, request: JobRequest, stale: frozenset[str] = frozenset()) -> CacheEntry:
        rec, key = claim.record, claim.key
        handle: Optional[JobHandle] = None
        possible_dup = rec.possible_duplicate
        started = time.time()
        if rec.state == "submitted" and rec.handle is not None:
            handle = rec.handle
            started = rec.submitting_since or started
            await self.journal.count("resumed")
            self._count("resumed")
        elif rec.state in ("submitting", "ambiguous"):
            handle, possible_dup = await self._resolve_ambiguous(claim, request, stale)
            started = rec.submitting_since or started
        resumed = handle is not None  # a job created earlier (by this attempt's previous owner, or found by lookup)
        if handle is None:
            handle, lease, possible_dup = await self._submit(key, request, possible_dup, stale)
        else:
            lease = await self.quota.adopt()
        self._in_flight(1)
        t_poll = time.monotonic()
        try:
            async with lease:
                status = await self._poll(handle, resumed=resumed)
                await lease.release()  # the provider slot is free at the terminal state
        finally:
            self._in_flight(-1)
            if self.callbacks is not None:
                self.callbacks.forget(handle.job_id)
        self._observe("poll", time.monotonic() - t_poll)
        return await self._finish(key, request, handle, status, started, possible_dup)

    async def _resolve_ambiguous(self, claim: Claim, request: JobRequest,
                                 stale: frozenset[str] = frozenset()) -> tuple[Optional[JobHandle], bool]:
        """A previous owner died during a create. Returns (handle to resume, resubmit-is-possible-duplicate)."""
        key = claim.key
        find = getattr(self.client, "find_job", None)
        if find is not None:
            await self.journal.count("ambiguous")
            self._count("ambiguous")
            try:
                since = (claim.record.submitting_since or time.time()) - _LOOKUP_MARGIN_S
                found = await self._call(find(request, since=since))
            except TeacherError as e:
                raise JobDeferred(f"ambiguous create, lookup failed: {e}") from None
            if found is not None and found.job_id not in stale:
                await self.journal.mark_submitted(key, claim.record.token or "", found, stat="found_by_lookup")
                self._count("found_by_lookup")
                return found, False
            return None, False  # the provider says no such job: resubmitting is safe
        state, elapsed = await self.journal.mark_ambiguous(key)
        self._count("ambiguous")
        if state == "submitted":  # the slow previous owner recorded its job id meanwhile
            rec = await self.journal.get(key)
            return rec.handle, rec.possible_duplicate
        if elapsed < self.journal.ambiguity_timeout_s:
            self._count("deferred")
            raise JobDeferred(f"ambiguous create for {key}: resubmit in {self.journal.ambiguity_timeout_s - elapsed:.0f}s")
        return None, True

    async def _submit(self, key: str, request: JobRequest, possible_dup: bool,
                      stale: frozenset[str] = frozenset()) -> tuple[JobHandle, Lease, bool]:
        """Create the job (retrying retryable classes). Returns (handle, lease, possible_duplicate)."""
        state = {"dup": possible_dup}

        async def once() -> tuple[JobHandle, Lease, bool]:
            try:
                lease = await self.quota.acquire(self.acquire_timeout_s)
            except QuotaTimeout as e:
                self._count("deferred")
                raise JobDeferred(str(e)) from None
            try:
                token = await self.journal.begin_submit(key, self.provider, request, possible_duplicate=state["dup"])
                self._count("submits")
                t_submit = time.monotonic()
                try:
                    handle = await self._call(self.client.submit(request))
                    if self.callbacks is not None:  # at once: the callback may beat the journal write
                        self.callbacks.expect(handle)
                except TeacherError as e:
                    self._error(e)
                    await self._after_failed_create(key, request, token, e, state, stale)
                    raise
                self._observe("submit", time.monotonic() - t_submit)
                await self.journal.mark_submitted(key, token, handle)
                self._count("created")
            except BaseException:
                await asyncio.shield(lease.release())
                raise
            await self.quota.on_success()
            return handle, lease, state["dup"]

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.submit_attempts),
                wait=wait_exponential_jitter(multiplier=self.retry_initial_s, max=self.retry_max_s,
                                             jitter=self.retry_initial_s),
                retry=retry_if_exception(lambda e: isinstance(e, TeacherError) and e.error_class.retryable),
                reraise=True,
            ):
                with attempt:
                    return await once()
        except _Resolved as r:
            return r.handle, await self.quota.adopt(), state["dup"]
        except TeacherError as e:
            await self._fatal(key, request, e)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _after_failed_create(self, key: str, request: JobRequest, token: str, e: TeacherError,
                                   state: dict[str, bool], stale: frozenset[str] = frozenset()) -> None:
        """Journal and quota bookkeeping for a create that raised."""
        if e.error_class is ErrorClass.TRANSIENT:
            # Ambiguous: the create may have reached the provider.
            find = getattr(self.client, "find_job", None)
            found = await self._call(find(request, since=time.time() - _LOOKUP_MARGIN_S)) if find is not None else None
            if found is not None and found.job_id in stale:
                found = None  # a failed attempt's job, not this create's
            if found is not None:
                await self.journal.mark_submitted(key, token, found, stat="found_by_lookup")
                self._count("found_by_lookup")
                raise _Resolved(found)
            if find is None:
                state["dup"] = True  # the retry may duplicate this create; count it
            else:
                await self.journal.abandon_submit(key, token)
        else:
            await self.journal.abandon_submit(key, token)  # a refused create did not happen
        if e.error_class.retryable:
            self._count("retried")
        if e.error_class in _THROTTLE:
            self._count("throttled")
            await self.quota.on_throttle(e.retry_after_s)

    async def _fatal(self, key: str, request: JobRequest, e: TeacherError) -> None:
        """Non-retryable (or retries exhausted) → dead-letter, halt, or a failed attempt."""
        if e.error_class in _HALT:
            self.halted = e
            await self.journal.alert(self.provider, error_class=e.error_class.value, reason=str(e))
            raise GatewayHalted(str(e)) from None
        if e.error_class in _DEAD:
            await self.journal.dead_letter(key, self.provider, request, error_class=e.error_class.value, reason=str(e))
            self._count("dead")
            raise JobDeadLettered(e.error_class.value, str(e)) from None
        if e.error_class.retryable:
            self._count("deferred")
            raise JobDeferred(f"create still refused after {self.submit_attempts} tries: {e}") from None
        raise _AttemptFailed(str(e)) from None

    async def _poll(self, handle: JobHandle, *, resumed: bool = False) -> JobStatus:
        """Until the job is terminal. With callbacks, a resumed job is polled at once: its callback
        went to the URL of the process that created it, which may be gone."""
        deadline = time.monotonic() + self.job_timeout_s
        polling_since = time.monotonic()  # for a resumed job this is late: the ETA errs early (an extra poll), never late
        interval, errors = self.poll_interval_s, 0
        box = self.callbacks.expect(handle) if self.callbacks is not None else None
        wait = 0.0 if resumed else self.callback_poll_s
        while True:
            if box is not None:  # the callback, or the fallback poll after `wait`
                outcome, done = await box.next(min(wait, max(0.0, deadline - time.monotonic())))
                self._count(f"callbacks_{outcome}")
                if done is not None:
                    return done
            try:
                self._count("polls")
                status = await self._call(self.client.poll(handle))
                errors = 0
            except TeacherError as e:
                self._error(e)
                if e.error_class in _HALT:
                    self.halted = e
                    raise GatewayHalted(str(e)) from None
                errors += 1
                if not e.error_class.retryable or errors > self.submit_attempts:
                    raise _AttemptFailed(f"poll: {e}") from None
                status = None
                wait = max(e.retry_after_s or 0.0, min(self.retry_max_s, self.retry_initial_s * 2 ** errors))
            if status is not None:
                if status.state.terminal:
                    return status
                wait = status.retry_after_s or interval
                interval = min(interval * 1.5, self.poll_max_interval_s)
                p = status.progress
                if box is not None:
                    wait = status.retry_after_s or self.callback_poll_s
                elif not status.retry_after_s and p is not None and 0.05 <= p < 1.0:
                    # The provider reports progress: poll at the predicted finish (capped by the max interval)
                    # instead of up to one backoff interval after it: that idle tail is quota paid for, unused.
                    eta = (time.monotonic() - polling_since) * (1.0 - p) / p
                    wait = min(self.poll_max_interval_s, max(self.poll_interval_s / 4.0, eta + 0.01))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                try:
                    await self._call(self.client.cancel(handle))
                except TeacherError:
                    pass
                raise _AttemptFailed(f"job {handle.job_id} not terminal after {self.job_timeout_s}s; cancelled")
            if box is None:  # with callbacks, the mailbox wait at the top is the pause
                await asyncio.sleep(min(wait, remaining))

    async def _finish(self, key: str, request: JobRequest, handle: JobHandle, status: JobStatus,
                      started: float, possible_dup: bool) -> CacheEntry:
        if status.state is not JobState.SUCCEEDED:
            if status.error_class in (ErrorClass.CONTENT_REJECTED, ErrorClass.INVALID):
                await self._fatal(key, request, TeacherError(status.error_class, status.error_message or "job failed"))
            raise _AttemptFailed(f"job {handle.job_id} ended {status.state.value}: {status.error_message or ''}")
        t_download = time.monotonic()
        clip = await self._download_and_decode(key, request, status)
        self._observe("download", time.monotonic() - t_download)
        latency = max(0.0, time.time() - started)
        meta = TeacherMeta(provider=self.provider, model=handle.model or request.model, job_id=handle.job_id,
                           latency_s=latency, video_seconds=clip.duration_s,
                           usage=dict(status.usage), possible_duplicate=possible_dup,
                           source=dict(getattr(clip, "source", None) or {}))
        entry, _ = await self.cache.put(self.provider, request, clip, meta)
        self._observe("end_to_end", latency)
        await self.journal.finish(key, "done", result_key=entry.key)
        self._count("done")
        return entry

    async def _download_and_decode(self, key: str, request: JobRequest, status: JobStatus) -> Clip:
        last: Optional[TeacherError] = None
        for i in range(self.download_attempts):
            try:
                data = status.result_bytes if status.result_bytes is not None else \
                    await self._call(self.client.download(status))
            except TeacherError as e:
                self._error(e)
                if e.error_class is ErrorClass.EXPIRED_RESULT:
                    self._count("results_expired")
                    raise _AttemptFailed(f"result expired before download: {e}") from None
                if not (e.error_class.retryable or e.error_class is ErrorClass.CORRUPT_RESULT):
                    await self._fatal(key, request, e)
                last = e
                await asyncio.sleep(min(self.retry_max_s, self.retry_initial_s * 2 ** i))
                continue
            if self.metrics is not None:
                self.metrics(M.TEACHER_ACTOR_CLIP_BYTES).inc(len(data))
            try:
                # Off the event loop, where it would delay other jobs' callbacks, lease releases and creates.
                return await asyncio.to_thread(self.decode, data)
            except Exception as e:  # noqa: BLE001 - any decoder failure means a bad result
                self._count("corrupt_results")
                last = e if isinstance(e, TeacherError) else TeacherError(ErrorClass.CORRUPT_RESULT, repr(e)[:300])
                self._error(last)
                if status.result_bytes is not None:
                    break  # inline bytes cannot be fetched again
        assert last is not None
        if last.error_class is ErrorClass.CORRUPT_RESULT and self.corrupt_result == "new_job":
            raise _AttemptFailed(f"bad result after {self.download_attempts} downloads: {last}")
        if last.error_class is ErrorClass.CORRUPT_RESULT:
            await self._fatal(key, request, TeacherError(ErrorClass.CORRUPT_RESULT, f"undecodable result: {last}"))
        # A transient download failure says nothing about the job, which is done and paid for: keep
        # its journal record "submitted" and defer, so the next claim re-polls it by id and downloads
        # again (a fresh job would pay twice). An expired URL is the path that creates a new job.
        self._count("deferred")
        raise JobDeferred(f"result of job {status.handle.job_id} not downloaded yet: {last}")

    # ------------------------------------------------------------------ many jobs
    def stop(self) -> None:
        """Stop taking prompts; a worker pool (`gateway_run.run_many`) drains in-flight jobs, then hands the rest back."""
        self._stop.set()


# gateway counter name → `afd_teacher_actor_jobs_total{state}`
_EVENTS: dict[str, str] = {"created": "submitted", "done": "succeeded", "attempts_failed": "failed",
                           "results_expired": "expired", "retried": "retried", "ambiguous": "ambiguous",
                           "dead": "dead_lettered", "cache_hits": "cache_hit"}
# gateway counter name → `afd_teacher_actor_callbacks_total{outcome}`
_CALLBACKS: dict[str, str] = {f"callbacks_{o}": o for o in ("completed", "woke", "missed")}
