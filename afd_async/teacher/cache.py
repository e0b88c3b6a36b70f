"""Teacher clip cache in Redis, with a reuse budget and cost accounting.

A teacher clip is identified by `request_digest(provider, request)` (provider,
model, prompt, params, seed). Its record is one msgpack map with a `schema`
field: raw `uint8` frames `(T, H, W, 3)` + shape + fps + teacher_meta.

Reuse: each pair that uses a clip takes one *use* (`take(prompt)`); after
`reuse_count` uses the clip leaves the prompt's ready index, and the prompt needs
a fresh teacher query with a new seed (`next_seed(prompt)` = number of clips
ever made for it, deterministic across actors so the journal deduplicates).

Keys under `afd:teacher:cache`: `clip:{digest}` (record), `uses` (hash),
`ready:{prompt_id}` (zset of digests with uses left), `ready_prompts` (zset),
`prompts` (prompt_id → text), `made` (prompt_id → clips made), `cost` (totals).

Invariants: a clip is stored and its costs counted once (a second put of the
same key is a no-op, so a duplicate job never double-counts); a clip is handed
out at most `reuse_count` times; readers reject unknown schema versions.
The take script derives clip keys from the index, so it needs a standalone
Redis (not Cluster).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Optional, TypeVar

import msgpack
import numpy as np
import redis.asyncio as aioredis

from afd_async.teacher.contract import JobRequest
from afd_async.teacher.journal import request_digest
from afd_async.video.clip import Clip

T = TypeVar("T")
SCHEMA_VERSION = 1

# KEYS clip, ready_pid, ready_prompts, prompts, made, cost, seq; ARGV blob, digest, pid, prompt, (unused), ttl_ms,
# video_s, latency_s, usage_json. Returns 1 if stored, 0 if the key already existed (nothing changes).
# "Oldest first" is the order of puts as Redis ran them (a counter), not wall-clock milliseconds: two puts in
# one millisecond (or a clock step back) would otherwise tie and be ordered by digest.
_PUT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if tonumber(ARGV[6]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[6])
else redis.call('SET', KEYS[1], ARGV[1]) end
local order = redis.call('INCR', KEYS[7])
redis.call('ZADD', KEYS[2], order, ARGV[2])
redis.call('ZADD', KEYS[3], 'NX', order, ARGV[3])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('HINCRBY', KEYS[5], ARGV[3], 1)
redis.call('HINCRBY', KEYS[6], 'jobs', 1)
redis.call('HINCRBYFLOAT', KEYS[6], 'video_seconds', ARGV[7])
redis.call('HINCRBYFLOAT', KEYS[6], 'latency_seconds', ARGV[8])
for k, v in pairs(cjson.decode(ARGV[9])) do
  if type(v) == 'number' then redis.call('HINCRBYFLOAT', KEYS[6], 'usage:' .. k, v) end
end
return 1
"""
# KEYS ready_pid, ready_prompts, uses, cost; ARGV pid, reuse_count, clip_prefix -> {digest, use_no, blob} | nil
_TAKE = """
while true do
  local d = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not d then redis.call('ZREM', KEYS[2], ARGV[1]); return nil end
  local blob = redis.call('GET', ARGV[3] .. d)
  if blob then
    local n = redis.call('HINCRBY', KEYS[3], d, 1)
    if n >= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], d) end
    if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
    redis.call('HINCRBY', KEYS[4], 'pairs', 1)
    return {d, n, blob}
  end
  redis.call('ZREM', KEYS[1], d)
end
"""


class CacheRecordError(ValueError):
    """A cache record that cannot be read (corrupt, foreign, or a wrong field); the message says why."""


class SchemaVersionError(CacheRecordError):
    """A cache record written by an unknown (newer or older) schema."""


def prompt_id(prompt: str) -> str:
    """Stable short id of a prompt text."""
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TeacherMeta:
    """Where a teacher clip came from and what it cost."""

    provider: str
    model: str
    job_id: str
    latency_s: float
    video_seconds: float
    usage: dict[str, Any] = field(default_factory=dict)  # provider-reported usage/cost
    possible_duplicate: bool = False
    source: dict[str, Any] = field(default_factory=dict)  # the provider's clip before resampling: fps, height, width, frames


@dataclass(frozen=True)
class CacheEntry:
    """A cached teacher clip. `frames` are read-only views of the stored bytes.

    `use` is the 1-based use number when handed out by `take`, else 0.
    """

    key: str
    prompt: str
    seed: int
    params: dict[str, Any]
    clip: Clip
    meta: TeacherMeta
    created_at: float
    use: int = 0


def encode_entry(e: CacheEntry) -> bytes:
    f = np.ascontiguousarray(e.clip.frames)
    return msgpack.packb({
        "schema": SCHEMA_VERSION, "key": e.key, "prompt": e.prompt, "seed": e.seed,
        "params": json.dumps(e.params, sort_keys=True, default=str), "frames": f.tobytes(),
        "shape": list(f.shape), "dtype": "uint8", "fps": float(e.clip.fps),
        "meta": asdict(e.meta), "created_at": e.created_at,
    }, use_bin_type=True)


def decode_entry(blob: bytes, *, use: int = 0) -> CacheEntry:
    """Parse a record.

    Raises:
        SchemaVersionError: an unknown schema (or dtype).
        CacheRecordError: anything else wrong with the bytes (never a bare msgpack/numpy error).
    """
    try:
        d = msgpack.unpackb(blob, raw=False)
    except Exception as e:  # noqa: BLE001 - msgpack raises many types on garbage
        raise CacheRecordError(f"teacher cache record is not msgpack ({type(e).__name__})") from None
    v = d.get("schema") if isinstance(d, dict) else None
    if v != SCHEMA_VERSION:
        raise SchemaVersionError(f"teacher cache record has schema {v!r}; this reader understands {SCHEMA_VERSION} "
                                 "(clear the cache or upgrade the reader)")
    if d.get("dtype") != "uint8":
        raise SchemaVersionError(f"teacher cache record has dtype {d.get('dtype')!r}, expected 'uint8'")
    try:
        frames = np.frombuffer(d["frames"], dtype=np.uint8).reshape(tuple(d["shape"]))
        return CacheEntry(key=str(d["key"]), prompt=str(d["prompt"]), seed=int(d["seed"]),
                          params=json.loads(d["params"]), clip=Clip(frames=frames, fps=float(d["fps"])),
                          meta=_meta(d["meta"]), created_at=float(d["created_at"]), use=use)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as e:
        raise CacheRecordError(f"malformed teacher cache record: {type(e).__name__}: {str(e)[:200]}") from None


def _meta(d: dict[str, Any]) -> TeacherMeta:
    """TeacherMeta from a record; fields a newer writer added are ignored (older readers stay compatible)."""
    known = {f for f in TeacherMeta.__dataclass_fields__}
    if not isinstance(d, dict):
        raise TypeError(f"meta is {type(d).__name__}, not a map")
    return TeacherMeta(**{k: v for k, v in d.items() if k in known})


class TeacherCache:
    """Teacher clips shared by all actors.

    Args:
        redis: async client with `decode_responses=False` (records are binary).
        reuse_count: how many pairs may use one clip (≥ 1).
        ttl_s: clip lifetime in Redis (None: no expiry).
        op_timeout_s: timeout of each Redis round trip.
    """

    def __init__(self, redis: aioredis.Redis, *, namespace: str = "afd:teacher:cache", reuse_count: int = 1,
                 ttl_s: Optional[float] = None, op_timeout_s: float = 10.0) -> None:
        if reuse_count < 1:
            raise ValueError(f"reuse_count must be >= 1 (uses per clip), got {reuse_count}")
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0 or None, got {ttl_s}")
        self.redis = redis
        self.ns = namespace
        self.reuse_count = int(reuse_count)
        self.ttl_s = ttl_s
        self.op_timeout_s = float(op_timeout_s)
        self._put = redis.register_script(_PUT)
        self._take = redis.register_script(_TAKE)

    def _k(self, name: str) -> str:
        return f"{self.ns}:{name}"

    async def _op(self, aw: Awaitable[T]) -> T:
        return await asyncio.wait_for(aw, self.op_timeout_s)

    def key(self, provider: str, request: JobRequest) -> str:
        return request_digest(provider, request)

    async def put(self, provider: str, request: JobRequest, clip: Clip, meta: TeacherMeta) -> tuple[CacheEntry, bool]:
        """Store a clip (first writer wins). Returns `(entry, stored)`; `stored=False` if it existed."""
        key = self.key(provider, request)
        entry = CacheEntry(key=key, prompt=request.prompt, seed=int(request.seed), params=dict(request.params),
                           clip=clip, meta=meta, created_at=time.time())
        pid = prompt_id(request.prompt)
        ttl_ms = int(self.ttl_s * 1000) if self.ttl_s else 0
        stored = await self._op(self._put(
            keys=[self._k(f"clip:{key}"), self._k(f"ready:{pid}"), self._k("ready_prompts"), self._k("prompts"),
                  self._k("made"), self._k("cost"), self._k("put_seq")],
            args=[encode_entry(entry), key, pid, request.prompt, int(entry.created_at * 1000), ttl_ms,
                  repr(float(meta.video_seconds)), repr(float(meta.latency_s)), json.dumps(meta.usage, default=str)]))
        if int(stored) == 1:
            return entry, True
        existing = await self.get(provider, request)
        return (existing or entry), False

    async def get(self, provider: str, request: JobRequest) -> Optional[CacheEntry]:
        """The clip for exactly this request, or None. Does not take a use."""
        blob = await self._op(self.redis.get(self._k(f"clip:{self.key(provider, request)}")))
        return decode_entry(blob) if blob is not None else None

    async def take(self, prompt: str) -> Optional[CacheEntry]:
        """Hand out one use of a ready clip for `prompt` (oldest first), or None if none is ready."""
        pid = prompt_id(prompt)
        r = await self._op(self._take(
            keys=[self._k(f"ready:{pid}"), self._k("ready_prompts"), self._k("uses"), self._k("cost")],
            args=[pid, self.reuse_count, self._k("clip:")]))
        if r is None:
            return None
        return decode_entry(r[2], use=int(r[1]))

    async def ready_prompts(self, limit: int = 100) -> list[str]:
        """Prompts with at least one clip that has uses left, oldest first."""
        pids = await self._op(self.redis.zrange(self._k("ready_prompts"), 0, max(0, limit - 1)))
        if not pids:
            return []
        texts = await self._op(self.redis.hmget(self._k("prompts"), pids))
        return [t.decode() if isinstance(t, bytes) else t for t in texts if t is not None]

    async def next_seed(self, prompt: str) -> int:
        """The seed for the prompt's next fresh teacher query (= clips made so far)."""
        n = await self._op(self.redis.hget(self._k("made"), prompt_id(prompt)))
        return int(n or 0)

    async def cost(self) -> dict[str, Any]:
        """Totals (`jobs`, `video_seconds`, `latency_seconds`, `pairs`, `usage`) and per-pair averages."""
        h = {(k.decode() if isinstance(k, bytes) else k): float(v)
             for k, v in (await self._op(self.redis.hgetall(self._k("cost")))).items()}
        usage = {k[len("usage:"):]: v for k, v in h.items() if k.startswith("usage:")}
        pairs = int(h.get("pairs", 0))
        out: dict[str, Any] = {"jobs": int(h.get("jobs", 0)), "video_seconds": h.get("video_seconds", 0.0),
                               "latency_seconds": h.get("latency_seconds", 0.0), "pairs": pairs, "usage": usage}
        out["per_pair"] = {"jobs": out["jobs"] / pairs, "video_seconds": out["video_seconds"] / pairs,
                           **{f"usage:{k}": v / pairs for k, v in usage.items()}} if pairs else {}
        return out

    async def stats(self) -> dict[str, Any]:
        """Metrics view: ready prompts and the cost totals."""
        n = await self._op(self.redis.zcard(self._k("ready_prompts")))
        return {"ready_prompts": int(n), "reuse_count": self.reuse_count, **(await self.cost())}

    def state_dict(self) -> dict[str, Any]:
        """The configuration (the clips live in Redis)."""
        return {"namespace": self.ns, "reuse_count": self.reuse_count, "ttl_s": self.ttl_s}
