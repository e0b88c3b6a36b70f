"""The teacher actor: prompt source → `TeacherGateway` → teacher cache (DESIGN.md §3).

    actor = build_actor(cfg, redis, metrics=m)        # one process, cfg.teacher.concurrency jobs at once
    loop.add_signal_handler(SIGTERM, actor.stop)
    report = await actor.run()                        # returns when the source ends or after stop()

Each job: download → verify/decode (`decode_mp4` caps) → resample to the
student's fps/size/length → cache, under `teacher_clip_key(cfg.teacher,
prompt, seed)`; the provider's own fps/size/frames stay in `teacher_meta.source`.

**No popped prompt is lost** (Redis queue source). The planner LPUSHes msgpack
records `{"schema": 1, "prompt_id", "prompt", "seed"}` to `source.queue_key`. A
worker takes one with `BLMOVE queue → afd:teacher:processing:{owner}`, so a
record is always in the queue or in exactly one actor's processing list. It
leaves that list only when its job has an end: a clip in the cache, or an
entry on the dead-letter stream (`ack`). Anything else — quota timeout, a
claim held by another actor, a drain timeout on SIGTERM, an unexpected error —
moves it back to the queue (`hand_back`) in one Lua script. Each actor
refreshes `afd:teacher:alive:{owner}` (TTL `source.actor_ttl_s`); every actor
periodically moves the processing lists of owners whose key has lapsed back
to the queue. A re-queued prompt resumes where its journal stands: a job whose
id was recorded is polled, never resubmitted, so recovery costs no duplicate.

Why not journal-first: the journal is keyed by request digest and cannot say
which queued records are pending; the processing list is the queue's own
reliable-queue pattern and needs no scan of the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Optional

import msgpack
import redis.asyncio as aioredis

from afd_async import metrics as M
from afd_async.config.cluster import ClusterConfig
from afd_async.config.credentials import WEBHOOK_SECRET_VAR, CredentialError, Secret
from afd_async.config.providers import canonical_provider
from afd_async.physics import PromptFileError, PromptFileReport, read_prompt_file
from afd_async.store.connect import async_redis_client
from afd_async.teacher.adapters import make_client
from afd_async.teacher.cache import TeacherCache, prompt_id
from afd_async.teacher.callbacks import CallbackReceiver, Verifier
from afd_async.teacher.clips import teacher_request
from afd_async.teacher.contract import ErrorClass, JobRequest, TeacherClient, TeacherError
from afd_async.teacher.gateway import TeacherGateway
from afd_async.teacher.gateway_errors import GatewayHalted, JobDeadLettered, JobDeferred, JobFailed
from afd_async.teacher.gateway_run import RunReport
from afd_async.teacher.journal import SubmitJournal
from afd_async.teacher.quota import SharedQuota
from afd_async.teacher.webhooks import FalVerifier, StandardWebhookVerifier, load_jwks
from afd_async.video.clip import Clip
from afd_async.video.resample import ClipTooShortError, resample_with_report

if TYPE_CHECKING:
    from afd_async.config.root import RootConfig
    from afd_async.metrics import RoleLabels

log = logging.getLogger(__name__)
QUEUE_SCHEMA = 1
NS = "afd:teacher"

# KEYS processing, queue; ARGV raw, front(1)/back(0). Atomic: the record is never in neither list.
_HAND_BACK = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
if ARGV[2] == '1' then redis.call('RPUSH', KEYS[2], ARGV[1]) else redis.call('LPUSH', KEYS[2], ARGV[1]) end
return 1
"""
# KEYS alive, processing, queue, actors; ARGV owner, force. Moves a dead owner's records to the queue's pop end.
_RECOVER = """
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local n = 0
while true do
  local v = redis.call('RPOP', KEYS[2])
  if not v then break end
  redis.call('RPUSH', KEYS[3], v)
  n = n + 1
end
redis.call('SREM', KEYS[4], ARGV[1])
return n
"""


@dataclass(frozen=True)
class QueueRecord:
    """One planner request as popped (`raw` is what must be acked or handed back)."""

    raw: bytes
    prompt_id: str
    prompt: str
    seed: int


def encode_record(prompt: str, seed: int, prompt_id_: Optional[str] = None) -> bytes:
    """A queue record as the planner writes it."""
    return msgpack.packb({"schema": QUEUE_SCHEMA, "prompt_id": prompt_id_ or prompt_id(prompt), "prompt": prompt,
                          "seed": int(seed)}, use_bin_type=True)


def decode_record(raw: bytes) -> QueueRecord:
    """Parse a queue record; ValueError (with the reason) for an unknown schema or a malformed record."""
    try:
        d = msgpack.unpackb(raw, raw=False)
    except Exception as e:  # noqa: BLE001 - any garbage is "malformed"
        raise ValueError(f"not msgpack: {type(e).__name__}") from None
    if not isinstance(d, dict) or d.get("schema") != QUEUE_SCHEMA:
        raise ValueError(f"queue record schema {d.get('schema') if isinstance(d, dict) else None!r}; "
                         f"this actor reads {QUEUE_SCHEMA}")
    if not isinstance(d.get("prompt"), str) or not d["prompt"].strip() or not isinstance(d.get("seed"), int):
        raise ValueError("queue record needs a non-empty str prompt and an int seed")
    return QueueRecord(raw=raw, prompt_id=str(d.get("prompt_id") or prompt_id(d["prompt"])), prompt=d["prompt"],
                       seed=int(d["seed"]))


class RedisPromptQueue:
    """The reliable prompt queue of one actor process (see the module docstring).

    Args:
        redis: async client, `decode_responses=False`.
        queue_key: the list the planner LPUSHes to.
        owner: unique id of this process (its processing list and alive key).
        actor_ttl_s: the alive key's TTL; `heartbeat()` must run more often (every ttl/3).
        op_timeout_s: timeout of each non-blocking Redis call.
    """

    def __init__(self, redis: aioredis.Redis, *, queue_key: str, owner: str, actor_ttl_s: float,
                 op_timeout_s: float = 5.0) -> None:
        self.redis, self.queue_key, self.owner = redis, queue_key, owner
        self.actor_ttl_s, self.op_timeout_s = actor_ttl_s, op_timeout_s
        self.processing = f"{NS}:processing:{owner}"
        self.actors = f"{NS}:actors"
        self._hand_back = redis.register_script(_HAND_BACK)
        self._recover = redis.register_script(_RECOVER)

    def _alive(self, owner: str) -> str:
        return f"{NS}:alive:{owner}"

    async def _op(self, aw: Any) -> Any:
        return await asyncio.wait_for(aw, self.op_timeout_s)

    async def heartbeat(self) -> None:
        """Register and refresh this owner's alive key."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._alive(self.owner), b"1", px=int(self.actor_ttl_s * 1000))
        pipe.sadd(self.actors, self.owner)
        await self._op(pipe.execute())

    async def pop(self, timeout_s: float) -> Optional[bytes]:
        """Move the oldest record to this owner's processing list; None after `timeout_s`."""
        return await asyncio.wait_for(
            self.redis.blmove(self.queue_key, self.processing, timeout_s, "RIGHT", "LEFT"),
            timeout_s + self.op_timeout_s)

    async def ack(self, raw: bytes) -> None:
        """The record's prompt has ended (clip cached or dead-lettered): forget it."""
        await self._op(self.redis.lrem(self.processing, 1, raw))

    async def hand_back(self, raw: bytes, *, front: bool) -> bool:
        """Return a record to the queue: at the pop end (`front`) or behind everything (a deferral)."""
        return int(await self._op(self._hand_back(keys=[self.processing, self.queue_key],
                                                  args=[raw, 1 if front else 0]))) == 1

    async def recover_dead(self) -> int:
        """Re-queue the processing lists of every owner whose alive key lapsed; returns records moved."""
        moved = 0
        for raw_owner in await self._op(self.redis.smembers(self.actors)):
            owner = raw_owner.decode() if isinstance(raw_owner, bytes) else str(raw_owner)
            if owner != self.owner:
                moved += max(0, int(await self._op(self._recover(
                    keys=[self._alive(owner), f"{NS}:processing:{owner}", self.queue_key, self.actors],
                    args=[owner, 0]))))
        if moved:
            log.warning("re-queued %d prompt(s) from teacher actors that died", moved)
        return moved

    async def close(self) -> int:
        """Leave cleanly: re-queue anything still held, drop the alive key. Returns records re-queued."""
        n = int(await self._op(self._recover(keys=[self._alive(self.owner), self.processing, self.queue_key,
                                                   self.actors], args=[self.owner, 1])))
        await self._op(self.redis.delete(self._alive(self.owner)))
        return n


def file_requests(cfg: "RootConfig") -> tuple[list[JobRequest], PromptFileReport]:
    """Requests of a prompt-file source (every good prompt with seeds 0..seeds_per_prompt-1) and the file's report.

    Every line is checked as `afd run prompts=` checks it (`physics.read_prompt_file`); the caller counts and
    logs the bad ones (`report.problems`) and goes on with the rest.

    Raises:
        PromptFileError: the file is missing, unreadable, too big, has no prompts, or no line is good (all listed).
    """
    src = cfg.teacher.source
    assert src.path is not None
    report = read_prompt_file(src.path)
    if not report.records:
        listed = "\n  ".join(report.describe(p) for p in report.problems[:20])
        raise PromptFileError(f"{report.path}: no usable prompt, all {len(report.problems)} prompt lines are bad:\n  {listed}")
    return [teacher_request(cfg.teacher, r.prompt, s) for r in report.records
            for s in range(src.seeds_per_prompt)], report


@dataclass(frozen=True, eq=False)
class ResampledClip(Clip):
    """A teacher clip at the student's size/fps/length; `source` describes the provider's original."""

    source: Optional[dict[str, Any]] = None


def make_decoder(cfg: "RootConfig") -> Callable[[bytes], Clip]:
    """MP4 bytes → verified clip resampled to the student (`TeacherError(CORRUPT_RESULT)` on a bad video).

    A video shorter than `decode.min_source_fraction` of the student's clip
    duration (e.g. the provider halved the length or mislabelled the fps) is
    treated as a bad result: resampling would have to freeze its last frame.
    """
    from afd_async.video.codec import VideoDecodeError, decode_mp4  # deferred: PyAV loads only where clips are decoded

    d, s = cfg.teacher.decode, cfg.student

    def decode(data: bytes) -> Clip:
        try:
            clip = decode_mp4(data, max_frames=d.max_frames, max_pixels=d.max_pixels, max_bytes=d.max_bytes,
                              max_total_pixels=d.max_total_pixels)
            r = resample_with_report(clip, fps=s.fps, height=s.height, width=s.width, num_frames=s.num_frames,
                                     min_source_fraction=d.min_source_fraction)
        except (VideoDecodeError, ClipTooShortError) as e:
            raise TeacherError(ErrorClass.CORRUPT_RESULT, str(e)[:300]) from None
        source = {"fps": clip.fps, "height": clip.height, "width": clip.width, "frames": clip.num_frames,
                  "padded_frames": r.padded_frames}
        return ResampledClip(frames=r.clip.frames, fps=r.clip.fps, source=source)

    return decode


def build_gateway(cfg: "RootConfig", redis: aioredis.Redis, client: TeacherClient, *,
                  metrics: Optional["RoleLabels"] = None, owner: Optional[str] = None,
                  callbacks: Optional[CallbackReceiver] = None) -> TeacherGateway:
    """The gateway of one actor: shared quota, journal and cache on `redis`, decoder to the student's size;
    with `callbacks` (`make_callback_receiver`) jobs end on the provider's callback, polling as the fallback."""
    t, q, g = cfg.teacher, cfg.teacher.quota, cfg.teacher.gateway
    quota = SharedQuota(redis, t.account, create_rate_per_min=q.create_rate_per_min, burst=q.burst,
                        max_in_flight=q.max_in_flight, lease_ttl_s=q.lease_ttl_s, aimd_decrease=q.aimd_decrease,
                        aimd_increase=q.aimd_increase, aimd_cooldown_s=q.aimd_cooldown_s, metrics=metrics)
    journal = SubmitJournal(redis, owner=owner, claim_ttl_s=g.claim_ttl_s, ambiguity_timeout_s=g.ambiguity_timeout_s)
    cache = TeacherCache(redis, reuse_count=t.reuse_count, ttl_s=t.cache_ttl_s)
    return TeacherGateway(
        client, quota, journal, cache, make_decoder(cfg), acquire_timeout_s=q.acquire_timeout_s,
        claim_wait_s=g.claim_wait_s, submit_attempts=g.submit_attempts, retry_initial_s=g.retry_initial_s,
        retry_max_s=g.retry_max_s, poll_interval_s=g.poll_interval_s, poll_max_interval_s=g.poll_max_interval_s,
        job_timeout_s=g.job_timeout_s, download_attempts=g.download_attempts, max_attempts=g.max_attempts,
        call_timeout_s=g.call_timeout_s, corrupt_result="new_job", exhausted="dead_letter", metrics=metrics,
        callbacks=callbacks, callback_poll_s=t.callback.fallback_poll_s)


class TeacherActor:
    """Runs `concurrency` workers over a prompt source until it ends or `stop()` (see the module docstring)."""

    def __init__(self, cfg: "RootConfig", gateway: TeacherGateway, redis: aioredis.Redis, *,
                 metrics: Optional["RoleLabels"] = None, owner: Optional[str] = None) -> None:
        self.cfg, self.gateway, self.redis, self.metrics = cfg, gateway, redis, metrics
        self.owner = owner or f"{gateway.journal.owner}:{uuid.uuid4().hex[:6]}"
        src = cfg.teacher.source
        self.queue = RedisPromptQueue(redis, queue_key=src.queue_key, owner=self.owner, actor_ttl_s=src.actor_ttl_s) \
            if src.kind == "redis" else None
        self.report = RunReport()
        self._stop = asyncio.Event()
        self._file: Optional[AsyncIterator[JobRequest]] = None

    def stop(self) -> None:
        """Stop taking prompts; `run` drains busy workers for `gateway.drain_timeout_s`, then hands back."""
        self._stop.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _housekeeping(self) -> None:
        """Alive key, dead actors' recovery, quota gauges, role heartbeat; every actor_ttl_s / 3."""
        period = self.cfg.teacher.source.actor_ttl_s / 3.0
        while True:
            try:
                if self.queue is not None:
                    await self.queue.heartbeat()
                    await self.queue.recover_dead()
                await self.gateway.quota.export_snapshot()
                if self.metrics is not None:
                    self.metrics.beat()
            except Exception as e:  # noqa: BLE001 - Redis blips: retried next period
                log.warning("teacher actor housekeeping failed: %s", type(e).__name__)
            await asyncio.sleep(period)

    async def _open_file_source(self) -> list[JobRequest]:
        """Read the prompt file; every bad line is logged, counted and dead-lettered, never silently skipped."""
        reqs, report = file_requests(self.cfg)
        for problem in report.problems:
            reason = report.describe(problem)
            log.warning("teacher actor: bad prompt line skipped: %s", reason)
            await self.redis.xadd(self.gateway.journal.dead_stream, {
                "scope": "record", "error_class": "bad_record", "reason": reason[:500], "source": str(report.path),
                "line": problem.line}, maxlen=self.gateway.journal.dead_maxlen, approximate=True)
            self.report.bad_records += 1
            if self.metrics is not None:  # a dead-letter entry like a bad queue record: visible on the dashboard
                self.metrics(M.TEACHER_ACTOR_JOBS, state="dead_lettered").inc()
        log.info("teacher actor: %d prompts from %s (%d bad lines)", len(report.records), report.path,
                 len(report.problems))
        return reqs

    async def _file_source(self, reqs: list[JobRequest]) -> AsyncIterator[JobRequest]:
        for r in reqs:
            yield r
        src = self.cfg.teacher.source
        while src.refill and not self._stop.is_set():
            for prompt in dict.fromkeys(r.prompt for r in reqs):
                ready = await self.redis.zcard(f"{self.gateway.cache.ns}:ready:{prompt_id(prompt)}")
                if ready == 0:
                    yield teacher_request(self.cfg.teacher, prompt, await self.gateway.cache.next_seed(prompt))
            await self._sleep(src.refill_interval_s)

    async def _next(self, lock: asyncio.Lock) -> Optional[tuple[Optional[bytes], JobRequest]]:
        """The next (raw record or None, request); None when the source ended or stop() was called."""
        while not self._stop.is_set():
            if self.queue is None:
                async with lock:
                    assert self._file is not None
                    req = await self._file.__anext__() if not self._stop.is_set() else None
                return None if req is None else (None, req)
            raw = await self.queue.pop(self.cfg.teacher.source.pop_timeout_s)
            if raw is None:
                continue
            if self._stop.is_set():
                await self.queue.hand_back(raw, front=True)
                self.report.handed_back += 1
                return None
            try:
                rec = decode_record(raw)
            except ValueError as e:
                await self.redis.xadd(self.gateway.journal.dead_stream, {  # the record itself too (hex: the
                    "scope": "record", "error_class": "bad_record", "reason": str(e)[:500],  # stream stays text)
                    "raw_hex": raw[:32768].hex(), "raw_bytes": len(raw)},
                    maxlen=self.gateway.journal.dead_maxlen, approximate=True)
                await self.queue.ack(raw)
                self.report.bad_records += 1
                if self.metrics is not None:  # a dead-letter entry like any other: visible on the dashboard
                    self.metrics(M.TEACHER_ACTOR_JOBS, state="dead_lettered").inc()
                continue
            return raw, teacher_request(self.cfg.teacher, rec.prompt, rec.seed)
        return None

    async def _worker(self, lock: asyncio.Lock, busy: set[asyncio.Task[None]]) -> None:
        me = asyncio.current_task()
        assert me is not None
        backoff = self.cfg.teacher.gateway.retry_initial_s
        while not self._stop.is_set() and self.gateway.halted is None:
            try:
                item = await self._next(lock)
            except StopAsyncIteration:
                return
            if item is None:
                return
            raw, req = item
            busy.add(me)
            ended, front = False, True
            try:
                await self.gateway.run_job(req)
                self.report.done, ended = self.report.done + 1, True
            except JobDeadLettered:
                self.report.dead, ended = self.report.dead + 1, True
            except JobFailed:  # not raised with exhausted="dead_letter"; kept for safety: the prompt goes back
                self.report.errors += 1
            except JobDeferred as e:
                self.report.deferred += 1
                front = False
                log.debug("teacher job deferred: %s", e)
                await self._sleep(min(backoff, 5.0))
                backoff = min(backoff * 2, self.cfg.teacher.gateway.retry_max_s)
            except GatewayHalted as e:
                self.report.halted = str(e)
            except asyncio.CancelledError:
                if raw is not None and self.queue is not None:
                    await asyncio.shield(self.queue.hand_back(raw, front=True))
                    self.report.handed_back += 1
                raise
            except Exception as e:  # noqa: BLE001 - one bad job must not kill the worker
                self.report.errors += 1
                front = False
                log.error("teacher job failed unexpectedly: %s: %s", type(e).__name__, str(e)[:300])
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.cfg.teacher.gateway.retry_max_s)
            finally:
                busy.discard(me)
            if ended:
                backoff = self.cfg.teacher.gateway.retry_initial_s
            if raw is not None and self.queue is not None:
                if ended:
                    await self.queue.ack(raw)
                else:
                    await self.queue.hand_back(raw, front=front)
                    self.report.handed_back += 1

    async def run(self) -> RunReport:
        """Work until the source ends, `stop()`, or an account-level halt; returns the report.

        Raises:
            PromptFileError: a file source that is unreadable or has no usable prompt (before any job starts).
        """
        if self.queue is None:  # a bad file raises PromptFileError here, before any job
            self._file = self._file_source(await self._open_file_source()).__aiter__()
        else:
            await self.queue.heartbeat()
        house = asyncio.create_task(self._housekeeping(), name="teacher-housekeeping")
        lock, busy = asyncio.Lock(), set()
        tasks = [asyncio.create_task(self._worker(lock, busy), name=f"teacher-worker-{i}")
                 for i in range(self.cfg.teacher.concurrency)]
        all_done = asyncio.gather(*tasks, return_exceptions=True)
        stopper = asyncio.create_task(self._stop.wait())
        await asyncio.wait([all_done, stopper], return_when=asyncio.FIRST_COMPLETED)
        if not all_done.done():  # stop(): idle workers notice within pop_timeout_s; busy ones get the drain time
            drain = self.cfg.teacher.gateway.drain_timeout_s
            t0 = time.monotonic()
            await asyncio.wait([all_done], timeout=drain + self.cfg.teacher.source.pop_timeout_s)
            for t in tasks:
                t.cancel()
            await asyncio.wait([all_done], timeout=max(5.0, drain - (time.monotonic() - t0)))
        stopper.cancel()
        house.cancel()
        if self.queue is not None:
            self.report.handed_back += await self.queue.close()
        if self.gateway.halted is not None and self.report.halted is None:
            self.report.halted = str(self.gateway.halted)
        return self.report


def make_teacher_client(cfg: "RootConfig", credentials: dict[str, Any], *,
                        callback_url: Optional[str] = None) -> TeacherClient:
    """The provider adapter for `cfg.teacher` (local: our server at cluster.teacher_server_host/port).

    Every adapter's idempotency key carries the gateway's attempt number
    (`adapters._http.request_key`), so a fresh attempt after a bad render is a
    new job rather than a replay of the broken one.
    """
    t, c = cfg.teacher, cfg.cluster
    base_url = t.base_url or (f"http://{c.teacher_server_host}:{c.teacher_server_port}" if t.provider == "local" else None)
    extra = {"callback_url": callback_url} if callback_url else {}
    return make_client(t.provider, base_url=base_url, credentials=credentials, timeout_s=t.gateway.call_timeout_s,
                       model=t.model, max_bytes=t.decode.max_bytes, **extra)


# provider (canonical) → its callback signature scheme; providers not listed have no callbacks (polling only)
_CALLBACK_SCHEMES: dict[str, Optional[str]] = {"openai": "standard", "replicate": "standard", "fal": "fal",
                                                "luma": None, "kling": None}


def make_callback_receiver(cfg: "RootConfig", webhook_secret: Optional[Secret] = None) -> Optional[CallbackReceiver]:
    """The actor's callback receiver per `teacher.callback` (bound, not started), or None (off, or the
    provider cannot call back: then polling alone, logged once).

    Raises:
        CredentialError: a Standard-Webhooks provider (replicate, openai/local) without
            `AFD_TEACHER_WEBHOOK_SECRET`: its callbacks could not be verified.
    """
    cb, provider = cfg.teacher.callback, provider_name(cfg)
    if not cb.enabled:
        return None
    if provider not in _CALLBACK_SCHEMES:
        log.info("teacher.callback: %s has no completion callbacks; polling only", provider)
        return None
    verifier: Optional[Verifier] = None
    if _CALLBACK_SCHEMES[provider] == "standard":
        if webhook_secret is None:
            raise CredentialError(f"teacher.callback with {provider} needs the webhook signing secret: set "
                                  f"{WEBHOOK_SECRET_VAR} (or _FILE)")
        verifier = StandardWebhookVerifier(webhook_secret, tolerance_s=cb.tolerance_s)
    elif _CALLBACK_SCHEMES[provider] == "fal" and cb.fal_jwks_path:
        verifier = FalVerifier(load_jwks(cb.fal_jwks_path), tolerance_s=cb.tolerance_s)
    return CallbackReceiver(host=cb.host, port=cb.port, public_url=cb.public_url, verifier=verifier)


def connect_redis(url: Optional[str], cluster: Optional[ClusterConfig] = None) -> aioredis.Redis:
    """An async client for `cluster.redis_url`: user, password and TLS as `store.connect.redis_connection_kwargs`.

    `socket_timeout` is left unset because blocking pops wait longer than one
    op; every call above carries its own `asyncio.wait_for` bound instead.
    """
    if not url:
        raise ValueError("the teacher actor needs cluster.redis_url (e.g. redis://127.0.0.1:6390/0)")
    return async_redis_client(cluster if cluster is not None else ClusterConfig(redis_url=url))


def provider_name(cfg: "RootConfig") -> str:
    """The provider the gateway stamps on keys (see `config.providers.canonical_provider`)."""
    return canonical_provider(cfg.teacher.provider)
