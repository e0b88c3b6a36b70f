"""Idempotent submit journal in Redis: a prompt is created at the provider at most once.

A request (provider, model, prompt, params, seed, attempt) has one journal
record `afd:teacher:job:{digest}:{attempt}` and one claim key
`afd:teacher:claim:{digest}:{attempt}` (SET NX with the owner's id and a TTL,
renewed while the owner works). Protocol for the owner:

    claim → begin_submit ("submitting", BEFORE the provider call)
          → mark_submitted (provider job id) → poll → finish done | failed
          → or dead_letter (poison: reason in the `afd:teacher:dead` stream)

What a new owner does with the record it finds at claim time:

- none / "new": submit.
- "submitted": the previous owner died after the create: resume polling by job id,
  never resubmit.
- "submitting" / "ambiguous": the previous owner died *during* the create, which
  may or may not have reached the provider (**ambiguous create**). Resolution:
  (1) if the adapter offers `find_job(request)`, look the job up and resume it,
  or resubmit if the provider says none exists; (2) otherwise wait until
  `ambiguity_timeout_s` has passed since the create began (a slow but alive
  owner can still record its job id: `mark_submitted` is fenced by the submit
  token, not the claim) and then resubmit, counting a **possible duplicate**.
  Tradeoff: a longer timeout delays the prompt; a shorter one risks paying twice
  for one clip. A duplicate costs money but never corrupts data: both jobs map to
  the same cache key and the cache keeps the first clip.
- "done" / "failed" / "dead": terminal for this attempt (a failed attempt may be
  retried as attempt + 1, which is a fresh record).

Invariants: `begin_submit` writes only while the caller holds the claim and the
record is not past "submitting"; every state change is one Lua script; the
server clock stamps all times.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Literal, Optional, TypeVar

import redis.asyncio as aioredis

from afd_async.teacher.contract import JobHandle, JobRequest

T = TypeVar("T")
State = Literal["new", "submitting", "submitted", "ambiguous", "done", "failed", "dead"]
TERMINAL = ("done", "failed", "dead")

_NOW = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
# KEYS claim, rec; ARGV owner, ttl_ms -> {1, record...} | {0, pttl}
_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return {0, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, redis.call('HGETALL', KEYS[2])}
"""
# KEYS claim; ARGV owner, ttl_ms. Re-takes an expired claim nobody else took.
_RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
# KEYS claim, rec, stats; ARGV owner, token, fields_json, record_ttl_ms, possible_dup
_BEGIN = _NOW + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'claim_lost' end
local st = redis.call('HGET', KEYS[2], 'state') or 'new'
if st ~= 'new' and st ~= 'submitting' and st ~= 'ambiguous' then return st end
for k, v in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[2], k, v) end
redis.call('HSET', KEYS[2], 'state', 'submitting', 'token', ARGV[2], 'submitting_since', now, 'updated_at', now)
redis.call('HINCRBY', KEYS[2], 'submits', 1)
redis.call('HINCRBY', KEYS[3], 'submits', 1)
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[2], 'possible_duplicate', 1)
  redis.call('HINCRBY', KEYS[3], 'possible_duplicates', 1)
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 'ok'
"""
# KEYS rec, stats; ARGV token, handle_json, new_state ('submitted' or 'new'), stat_field
_SUBMITTED = _NOW + """
local st = redis.call('HGET', KEYS[1], 'state')
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if st ~= 'submitting' and st ~= 'ambiguous' then return (st == ARGV[3]) and 1 or 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'handle', ARGV[2], 'updated_at', now)
if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[4], 1) end
return 1
"""
# KEYS claim, rec, stats; ARGV owner -> {state, submitting_since_ms, now_ms}
_AMBIGUOUS = _NOW + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'claim_lost', '0', tostring(now)} end
local st = redis.call('HGET', KEYS[2], 'state')
if st == 'submitting' then
  redis.call('HSET', KEYS[2], 'state', 'ambiguous', 'updated_at', now)
  redis.call('HINCRBY', KEYS[3], 'ambiguous', 1)
  st = 'ambiguous'
end
return {st or 'new', redis.call('HGET', KEYS[2], 'submitting_since') or '0', tostring(now)}
"""
# KEYS claim, rec, stats, dead; ARGV owner, state, reason, result_key, record_ttl_ms, dead_fields_json, maxlen
_FINISH = _NOW + """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 'claim_lost' end
local st = redis.call('HGET', KEYS[2], 'state') or 'new'
if st == 'done' or st == 'failed' or st == 'dead' then return st end
redis.call('HSET', KEYS[2], 'state', ARGV[2], 'reason', ARGV[3], 'result_key', ARGV[4], 'updated_at', now)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
if ARGV[2] == 'dead' then
  local args = {'XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*'}
  for k, v in pairs(cjson.decode(ARGV[6])) do table.insert(args, k); table.insert(args, tostring(v)) end
  redis.call(unpack(args))
end
return 'ok'
"""
# KEYS gaveup, stats, dead; ARGV record_ttl_ms, dead_fields_json, maxlen. Once per request, whoever calls it.
_GIVE_UP = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) == false then return 0 end
redis.call('HINCRBY', KEYS[2], 'gave_up', 1)
local args = {'XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*'}
for k, v in pairs(cjson.decode(ARGV[2])) do table.insert(args, k); table.insert(args, tostring(v)) end
redis.call(unpack(args))
return 1
"""


class ClaimBusy(RuntimeError):
    """Another live actor holds this request's claim."""


class ClaimLost(RuntimeError):
    """A fenced write found the claim held by another actor (this one was presumed dead)."""


def request_digest(provider: str, request: JobRequest) -> str:
    """Deterministic id of (provider, model, prompt, params, seed): the teacher clip's identity."""
    doc = {"provider": provider, "model": request.model, "prompt": request.prompt,
           "params": request.params, "seed": int(request.seed)}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def handle_to_json(h: JobHandle) -> str:
    return json.dumps({"provider": h.provider, "job_id": h.job_id, "model": h.model, "extra": h.extra})


def handle_from_json(s: str) -> JobHandle:
    d = json.loads(s)
    return JobHandle(provider=d["provider"], job_id=d["job_id"], model=d.get("model", ""), extra=d.get("extra", {}))


@dataclass(frozen=True)
class JournalRecord:
    """One request's journal state as read at claim time (`state="new"` when absent)."""

    key: str
    state: str
    submits: int = 0
    handle: Optional[JobHandle] = None
    token: Optional[str] = None
    submitting_since: Optional[float] = None  # server epoch seconds
    possible_duplicate: bool = False
    reason: str = ""
    result_key: str = ""

    @classmethod
    def from_hash(cls, key: str, h: dict[str, str]) -> "JournalRecord":
        since = h.get("submitting_since")
        return cls(key=key, state=h.get("state", "new"), submits=int(h.get("submits", 0)),
                   handle=handle_from_json(h["handle"]) if h.get("handle") else None, token=h.get("token"),
                   submitting_since=float(since) / 1000.0 if since else None,
                   possible_duplicate=h.get("possible_duplicate") == "1", reason=h.get("reason", ""),
                   result_key=h.get("result_key", ""))


class Claim:
    """Ownership of one request. `async with claim:` renews it every ttl/3 and hands it back on exit.

    Handing back deletes only the claim: the record stays as it is, so another
    actor resumes from the last recorded state.
    """

    def __init__(self, journal: "SubmitJournal", key: str, record: JournalRecord) -> None:
        self.journal, self.key, self.record = journal, key, record
        self.lost = False
        self._task: Optional[asyncio.Task[None]] = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.journal.claim_ttl_s / 3.0)
            try:
                if not await self.journal.renew(self.key):
                    self.lost = True
                    return
            except Exception:  # noqa: BLE001 - retried next tick; the TTL covers 3 ticks
                pass

    async def __aenter__(self) -> "Claim":
        self._task = asyncio.create_task(self._loop(), name=f"claim-{self.key[-12:]}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        try:
            await asyncio.shield(self.journal.release_claim(self.key))
        except (OSError, asyncio.TimeoutError, aioredis.RedisError):
            pass  # the claim lapses after claim_ttl_s; the record is already resumable


class SubmitJournal:
    """The submit journal of one deployment (all providers share it; keys carry the provider).

    Args:
        redis: async client; `decode_responses` either way.
        owner: this actor's id (default host:pid:random).
        claim_ttl_s: a claim not renewed for this long passes to another actor.
        ambiguity_timeout_s: after this long since an unconfirmed create began, it is
            resubmitted (counted as a possible duplicate) when no lookup exists.
        record_ttl_s: journal records expire this long after their last write.
        dead_maxlen: approximate length cap of the dead-letter stream.
        op_timeout_s: timeout of each Redis round trip.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        namespace: str = "afd:teacher",
        owner: Optional[str] = None,
        claim_ttl_s: float = 30.0,
        ambiguity_timeout_s: float = 900.0,
        record_ttl_s: float = 14 * 86400.0,
        dead_maxlen: int = 100_000,
        op_timeout_s: float = 5.0,
    ) -> None:
        if not claim_ttl_s > 0 or ambiguity_timeout_s < 0 or not record_ttl_s > 0 or not op_timeout_s > 0:
            raise ValueError("need claim_ttl_s > 0, ambiguity_timeout_s >= 0, record_ttl_s > 0, op_timeout_s > 0")
        self.redis = redis
        self.ns = namespace
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.claim_ttl_s = float(claim_ttl_s)
        self.ambiguity_timeout_s = float(ambiguity_timeout_s)
        self.record_ttl_s = float(record_ttl_s)
        self.dead_maxlen = int(dead_maxlen)
        self.op_timeout_s = float(op_timeout_s)
        self.dead_stream = f"{namespace}:dead"
        self.stats_key = f"{namespace}:journal:stats"
        s = redis.register_script
        self._claim, self._renew, self._release = s(_CLAIM), s(_RENEW), s(_RELEASE)
        self._begin, self._submitted, self._ambig, self._finish = s(_BEGIN), s(_SUBMITTED), s(_AMBIGUOUS), s(_FINISH)
        self._give_up = s(_GIVE_UP)

    def state_dict(self) -> dict[str, Any]:
        """The configuration (records live in Redis)."""
        return {"namespace": self.ns, "claim_ttl_s": self.claim_ttl_s, "ambiguity_timeout_s": self.ambiguity_timeout_s,
                "record_ttl_s": self.record_ttl_s}

    def key(self, provider: str, request: JobRequest, attempt: int = 0) -> str:
        """The journal key of one attempt at one request."""
        return f"{request_digest(provider, request)}:{int(attempt)}"

    def _rec(self, key: str) -> str:
        return f"{self.ns}:job:{key}"

    def _cl(self, key: str) -> str:
        return f"{self.ns}:claim:{key}"

    async def _op(self, aw: Awaitable[T]) -> T:
        return await asyncio.wait_for(aw, self.op_timeout_s)

    @property
    def _ttl_ms(self) -> int:
        return int(self.claim_ttl_s * 1000)

    async def claim(self, key: str, *, wait_s: float = 0.0) -> Claim:
        """Take the request, waiting up to `wait_s` for a live owner's claim to lapse.

        Raises:
            ClaimBusy: still held by another actor after `wait_s`.
        """
        deadline = time.monotonic() + wait_s
        while True:
            ok, payload = await self._op(self._claim(keys=[self._cl(key), self._rec(key)], args=[self.owner, self._ttl_ms]))
            if int(ok) == 1:
                h = {_s(payload[i]): _s(payload[i + 1]) for i in range(0, len(payload), 2)}
                return Claim(self, key, JournalRecord.from_hash(key, h))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClaimBusy(f"request {key} is claimed by another actor for {int(payload)} ms more")
            await asyncio.sleep(min(max(int(payload), 1) / 1000.0, remaining))

    async def renew(self, key: str) -> bool:
        return int(await self._op(self._renew(keys=[self._cl(key)], args=[self.owner, self._ttl_ms]))) == 1

    async def release_claim(self, key: str) -> bool:
        """Hand the request back (only if this actor still holds it)."""
        return int(await self._op(self._release(keys=[self._cl(key)], args=[self.owner]))) == 1

    async def get(self, key: str) -> JournalRecord:
        h = await self._op(self.redis.hgetall(self._rec(key)))
        return JournalRecord.from_hash(key, {_s(k): _s(v) for k, v in h.items()})

    async def begin_submit(self, key: str, provider: str, request: JobRequest, *, possible_duplicate: bool = False) -> str:
        """Record "submitting" before the provider call; returns this create's token.

        Raises:
            ClaimLost: another actor holds the claim.
            RuntimeError: the record is already past "submitting" (a job exists).
        """
        token = uuid.uuid4().hex
        fields = {"provider": provider, "model": request.model, "prompt": request.prompt, "seed": str(request.seed),
                  "params": json.dumps(request.params, sort_keys=True, default=str)}
        r = _s(await self._op(self._begin(
            keys=[self._cl(key), self._rec(key), self.stats_key],
            args=[self.owner, token, json.dumps(fields), int(self.record_ttl_s * 1000), 1 if possible_duplicate else 0])))
        if r == "claim_lost":
            raise ClaimLost(f"request {key}: claim taken by another actor before submit")
        if r != "ok":
            raise RuntimeError(f"request {key}: refusing to submit, record is already '{r}'")
        return token

    async def mark_submitted(self, key: str, token: str, handle: JobHandle, *, stat: str = "") -> bool:
        """Record the provider job id of the create `token` (idempotent; fenced by the token)."""
        r = await self._op(self._submitted(keys=[self._rec(key), self.stats_key],
                                           args=[token, handle_to_json(handle), "submitted", stat]))
        return int(r) == 1

    async def abandon_submit(self, key: str, token: str) -> bool:
        """The create `token` definitely did not happen (e.g. 429, 401): back to "new"."""
        r = await self._op(self._submitted(keys=[self._rec(key), self.stats_key], args=[token, "", "new", ""]))
        return int(r) == 1

    async def mark_ambiguous(self, key: str) -> tuple[str, float]:
        """Flag an orphaned "submitting" record as ambiguous.

        Returns `(state, seconds_since_the_create_began)` by the server clock.
        """
        st, since, now = await self._op(self._ambig(keys=[self._cl(key), self._rec(key), self.stats_key], args=[self.owner]))
        st = _s(st)
        if st == "claim_lost":
            raise ClaimLost(f"request {key}: claim taken by another actor")
        return st, max(0.0, (float(now) - float(since)) / 1000.0)

    async def count(self, field: str, n: int = 1) -> None:
        """Bump a journal counter (e.g. `resumed`, `found_by_lookup`)."""
        await self._op(self.redis.hincrby(self.stats_key, field, n))

    async def finish(self, key: str, state: Literal["done", "failed"], *, reason: str = "", result_key: str = "") -> str:
        """Terminal state for this attempt (idempotent: an existing terminal state wins and is returned)."""
        return await self._finish_script(key, state, reason, result_key, {})

    async def dead_letter(self, key: str, provider: str, request: JobRequest, *, error_class: str, reason: str) -> str:
        """Poison item: state "dead" and an entry in the dead-letter stream, atomically."""
        entry = {"key": key, "provider": provider, "model": request.model, "prompt": request.prompt,
                 "seed": request.seed, "error_class": error_class, "reason": reason[:2000], "scope": "request"}
        return await self._finish_script(key, "dead", reason, "", entry)

    async def give_up(self, provider: str, request: JobRequest, *, attempts: int, reason: str) -> bool:
        """Dead-letter a request whose every attempt failed (`error_class` "attempts_exhausted").

        Why a separate record: each attempt's own record is already terminal
        ("failed"), and a prompt must end somewhere visible rather than vanish.
        Idempotent across actors: only the first call per request writes an
        entry. Returns True if this call wrote it.
        """
        digest = request_digest(provider, request)
        entry = {"key": f"{digest}:*", "provider": provider, "model": request.model, "prompt": request.prompt,
                 "seed": request.seed, "error_class": "attempts_exhausted", "attempts": attempts,
                 "reason": reason[:2000], "scope": "request"}
        r = await self._op(self._give_up(keys=[f"{self.ns}:gaveup:{digest}", self.stats_key, self.dead_stream],
                                         args=[int(self.record_ttl_s * 1000), json.dumps(entry, default=str),
                                               self.dead_maxlen]))
        return int(r) == 1

    async def alert(self, provider: str, *, error_class: str, reason: str) -> None:
        """An account-level failure (AUTH, QUOTA_EXHAUSTED) on the dead-letter stream; no prompt is dead."""
        await self._op(self.redis.xadd(self.dead_stream, {"scope": "account", "provider": provider,
                                                          "error_class": error_class, "reason": reason[:2000]},
                                       maxlen=self.dead_maxlen, approximate=True))

    async def _finish_script(self, key: str, state: str, reason: str, result_key: str, entry: dict[str, Any]) -> str:
        r = _s(await self._op(self._finish(
            keys=[self._cl(key), self._rec(key), self.stats_key, self.dead_stream],
            args=[self.owner, state, reason[:2000], result_key, int(self.record_ttl_s * 1000),
                  json.dumps(entry, default=str), self.dead_maxlen])))
        if r == "claim_lost":
            raise ClaimLost(f"request {key}: claim taken by another actor")
        return state if r == "ok" else r

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        """The newest `count` dead-letter entries, oldest first."""
        rows = await self._op(self.redis.xrevrange(self.dead_stream, count=count))
        return [{_s(k): _s(v) for k, v in fields.items()} for _id, fields in reversed(rows)]

    async def stats(self) -> dict[str, int]:
        """Counters: submits, resumed, ambiguous, possible_duplicates, found_by_lookup, done, failed, dead."""
        h = await self._op(self.redis.hgetall(self.stats_key))
        return {_s(k): int(v) for k, v in h.items()}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
