"""One teacher-account quota shared through Redis by every actor (DESIGN.md §3).

`SharedQuota` admits job *creates* for one provider account. A create needs two
things at once, taken in one atomic Lua script that reads the Redis server's
clock (`TIME`), never a client's:

- a **rate token** from a GCRA limiter (`create_rate_per_min`, `burst`);
- a free **lease** slot: in-flight jobs are members of a sorted set scored by
  lease expiry; the number of live leases never exceeds the adaptive limit.

Invariants (hold for any number of actors and processes on the account):

- In any window of length `L` seconds at most `burst + floor(L * rate / 60)`
  creates are admitted (GCRA; admission times are Redis server times).
- A rate token is consumed only when a lease slot is taken with it: a create
  that finds no free slot, or an active pause, consumes nothing.
- Live leases ≤ `floor(limit)` at admission; `1 ≤ limit ≤ max_in_flight`.
  A lease that is not renewed within `lease_ttl_s` (its actor died) is
  reclaimed by the next acquire.
- No create is admitted before the shared pause-until time, set from a
  provider's back-off hint (`TeacherError.retry_after_s`, which the adapters
  parse from `Retry-After` / `retry-after-ms` / `x-ratelimit-reset*`).
- The limit is AIMD: ×`aimd_decrease` on a throttle signal (at most once per
  `aimd_cooldown_s`, so one burst of 429s seen by N actors halves it once),
  +`aimd_increase` per successful create.

Waiting never busy-polls: a rate or pause wait sleeps exactly the time the
script returns; a full-slots wait blocks on a wake-up list that `release`
pushes to, bounded by the earliest lease expiry and by `max_block_s`. Within
one process only one task blocks on that list; the others wait for a release
made in this process, which wakes one of them without the hop through Redis
(the next create follows a completion callback by one script round trip).

Keys (`{account}` is a literal Redis-Cluster hash tag, so one script touches one
slot): `afd:quota:{account}:tat|leases|limit|pause|cool|wake`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Awaitable, Literal, Optional, TypeVar

import redis.asyncio as aioredis

from afd_async import metrics as M

if TYPE_CHECKING:
    from afd_async.metrics import RoleLabels

log = logging.getLogger(__name__)
T = TypeVar("T")
DenyReason = Literal["paused", "full", "rate"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function f(x) return string.format('%.3f', x) end
"""

# KEYS tat, leases, limit, pause; ARGV interval_ms, burst, max_in_flight, ttl_ms, lease_id, consume_rate.
# Order: pause -> reclaim expired leases -> slot check -> rate check -> take both. A refusal writes nothing
# but the reclaim, so a rate token is never spent without a slot.
_QUOTA_ACQUIRE = _NOW + """
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_if, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local pause = tonumber(redis.call('GET', KEYS[4]) or '0')
if now < pause then return {0, 'paused', f(pause - now), f(now)} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', f(now))
local limit = tonumber(redis.call('GET', KEYS[3]) or ARGV[3])
limit = math.max(1, math.min(max_if, math.floor(limit)))
if redis.call('ZCARD', KEYS[2]) >= limit then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, 'full', f(tonumber(first[2]) - now), f(now)}
end
if ARGV[6] == '1' then
  local tat = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
  local allow_at = tat - (burst - 1) * interval
  if now < allow_at then return {0, 'rate', f(allow_at - now), f(now)} end
  local new_tat = tat + interval
  redis.call('SET', KEYS[1], f(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
end
redis.call('ZADD', KEYS[2], f(now + ttl), ARGV[5])
return {1, 'ok', '0', f(now)}
"""

# KEYS leases; ARGV lease_id, ttl_ms. Returns 1 if the lease was live, 0 if it was gone (re-inserted).
_QUOTA_HEARTBEAT = _NOW + """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], f(now + tonumber(ARGV[2])), ARGV[1])
if s and tonumber(s) > now then return 1 end
return 0
"""

# KEYS leases, wake; ARGV lease_id, max_in_flight. Frees the slot and wakes one blocked acquirer.
_QUOTA_RELEASE = """
local r = redis.call('ZREM', KEYS[1], ARGV[1])
if r == 1 then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
  redis.call('PEXPIRE', KEYS[2], 60000)
end
return r
"""

# KEYS limit, cool, wake; ARGV decrease(1/0), max, min, factor, increment, cooldown_ms.
# Returns {new limit, 1 if this call decreased it}.
_QUOTA_AIMD = _NOW + """
local max_l, min_l = tonumber(ARGV[2]), tonumber(ARGV[3])
local cur = tonumber(redis.call('GET', KEYS[1]) or ARGV[2])
local new = cur
if ARGV[1] == '1' then
  local last = tonumber(redis.call('GET', KEYS[2]) or '0')
  if now - last < tonumber(ARGV[6]) then return {f(cur), 0} end
  new = math.max(min_l, cur * tonumber(ARGV[4]))
  redis.call('SET', KEYS[2], f(now))
else
  new = math.min(max_l, cur + tonumber(ARGV[5]))
  if math.floor(new) > math.floor(cur) then
    redis.call('RPUSH', KEYS[3], '1')
    redis.call('LTRIM', KEYS[3], 0, max_l - 1)
    redis.call('PEXPIRE', KEYS[3], 60000)
  end
end
redis.call('SET', KEYS[1], f(new))
return {f(new), (new < cur) and 1 or 0}
"""

# KEYS pause; ARGV seconds_ms. Extends, never shortens. Returns pause-until (ms).
_QUOTA_PAUSE = _NOW + """
local want = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if want > cur then
  redis.call('SET', KEYS[1], f(want), 'PX', math.ceil(want - now) + 1000)
  return f(want)
end
return f(cur)
"""

# KEYS tat, leases, limit, pause; ARGV interval_ms, burst, max. Read-only.
_QUOTA_SNAPSHOT = _NOW + """
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local tokens = math.max(0, math.min(burst, burst - (tat - now) / interval))
local n = redis.call('ZCOUNT', KEYS[2], '(' .. f(now), '+inf')
local limit = tonumber(redis.call('GET', KEYS[3]) or ARGV[3])
local pause = tonumber(redis.call('GET', KEYS[4]) or '0')
return {f(tokens), n, f(limit), f(pause), f(now)}
"""


class QuotaTimeout(TimeoutError):
    """`acquire` gave up; `reason` is the last refusal (`paused`, `full` or `rate`)."""

    def __init__(self, account: str, reason: str, waited_s: float) -> None:
        super().__init__(f"quota '{account}': no create admitted within {waited_s:.2f}s (last refusal: {reason})")
        self.reason = reason
        self.waited_s = waited_s


class Lease:
    """One in-flight job slot. Use as an async context manager.

    Inside the context a background task renews the lease every
    `heartbeat_interval_s`; `release()` (idempotent) frees the slot at the job's
    terminal state and wakes one waiter. `lost` becomes True if a renewal found
    the lease already reclaimed (the heartbeat re-inserts it, because the job
    is still running at the provider and must be counted).
    """

    def __init__(self, quota: "SharedQuota", lease_id: str, acquired_at: float) -> None:
        self.quota = quota
        self.lease_id = lease_id
        self.acquired_at = acquired_at  # Redis server time (epoch seconds) of admission
        self.lost = False
        self.released = False
        self._hb: Optional[asyncio.Task[None]] = None

    async def heartbeat(self) -> bool:
        """Extend the lease by `lease_ttl_s`. Returns False if it had been reclaimed."""
        alive = await self.quota._heartbeat(self.lease_id)
        if not alive:
            self.lost = True
            log.warning("quota %s: lease %s had expired and was re-inserted", self.quota.account, self.lease_id)
        return alive

    async def release(self) -> bool:
        """Free the slot (idempotent). Returns True if this call removed a live lease."""
        self._stop_heartbeat()
        if self.released:
            return False
        self.released = True
        return await self.quota._release(self.lease_id)

    def _stop_heartbeat(self) -> None:
        if self._hb is not None and not self._hb.done():
            self._hb.cancel()
        self._hb = None

    async def _heartbeat_loop(self) -> None:
        while not self.released:
            await asyncio.sleep(self.quota.heartbeat_interval_s)
            try:
                await self.heartbeat()
            except Exception as e:  # noqa: BLE001 - a failed renewal is retried next tick
                log.warning("quota %s: lease heartbeat failed: %s", self.quota.account, type(e).__name__)

    async def __aenter__(self) -> "Lease":
        if self._hb is None and not self.released:
            self._hb = asyncio.create_task(self._heartbeat_loop(), name=f"lease-hb-{self.lease_id[:8]}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await asyncio.shield(self.release())
        except (OSError, asyncio.TimeoutError, aioredis.RedisError) as e:  # the TTL reclaims it
            log.warning("quota %s: lease release failed (%s); it expires in %.0fs",
                        self.quota.account, type(e).__name__, self.quota.lease_ttl_s)


class SharedQuota:
    """Create-rate + in-flight quota of one provider account, held in Redis.

    Every actor on the account must construct it with the same settings.

    Args:
        redis: an async client (`decode_responses` either way).
        account: account name; namespaces the keys.
        create_rate_per_min: sustained creates per minute (> 0).
        burst: creates admissible back to back after idling (≥ 1).
        max_in_flight: hard cap on live leases (≥ 1); the AIMD limit's ceiling.
        lease_ttl_s: a lease not renewed for this long is reclaimed.
        heartbeat_interval_s: renewal period inside `async with lease` (default ttl/3).
        aimd_decrease: multiplicative factor on a throttle signal, in (0, 1).
        aimd_increase: added to the limit per successful create (≥ 0).
        aimd_min_limit: the limit's floor (≥ 1).
        aimd_cooldown_s: minimum time between two decreases.
        op_timeout_s: timeout of each Redis round trip.
        max_block_s: longest single blocking wait for a freed slot (BLPOP); the client's
            `socket_timeout`, if set, must exceed it.
        metrics: the teacher actor's `RoleLabels`: grants, denials, waits and AIMD decreases go to
            the declared `afd_quota_*` series (`export_snapshot` sets the account gauges).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        account: str,
        *,
        create_rate_per_min: float,
        burst: int = 1,
        max_in_flight: int,
        lease_ttl_s: float = 30.0,
        heartbeat_interval_s: Optional[float] = None,
        aimd_decrease: float = 0.5,
        aimd_increase: float = 0.5,
        aimd_min_limit: float = 1.0,
        aimd_cooldown_s: float = 2.0,
        op_timeout_s: float = 5.0,
        max_block_s: float = 5.0,
        metrics: Optional["RoleLabels"] = None,
    ) -> None:
        if not account or any(c in account for c in "{}"):
            raise ValueError(f"account must be a non-empty name without braces, got {account!r}")
        if not create_rate_per_min > 0:
            raise ValueError(f"create_rate_per_min must be > 0, got {create_rate_per_min}")
        if burst < 1 or max_in_flight < 1:
            raise ValueError(f"burst and max_in_flight must be >= 1, got {burst}, {max_in_flight}")
        if not lease_ttl_s > 0 or not op_timeout_s > 0 or not max_block_s > 0:
            raise ValueError("lease_ttl_s, op_timeout_s and max_block_s must be > 0")
        if not 0 < aimd_decrease < 1 or aimd_increase < 0:
            raise ValueError(f"need 0 < aimd_decrease < 1 and aimd_increase >= 0, got {aimd_decrease}, {aimd_increase}")
        if not 1 <= aimd_min_limit <= max_in_flight or aimd_cooldown_s < 0:
            raise ValueError("need 1 <= aimd_min_limit <= max_in_flight and aimd_cooldown_s >= 0")
        self.redis = redis
        self.account = account
        self.create_rate_per_min = float(create_rate_per_min)
        self.burst = int(burst)
        self.max_in_flight = int(max_in_flight)
        self.lease_ttl_s = float(lease_ttl_s)
        self.heartbeat_interval_s = float(heartbeat_interval_s or lease_ttl_s / 3.0)
        self.aimd_decrease = float(aimd_decrease)
        self.aimd_increase = float(aimd_increase)
        self.aimd_min_limit = float(aimd_min_limit)
        self.aimd_cooldown_s = float(aimd_cooldown_s)
        self.op_timeout_s = float(op_timeout_s)
        self.max_block_s = float(max_block_s)
        self.metrics = metrics
        if metrics is not None:
            metrics(M.QUOTA_IN_FLIGHT_MAX).set(self.max_in_flight)
            metrics(M.QUOTA_CREATE_LIMIT).set(self.create_rate_per_min / 60.0)
            metrics(M.QUOTA_CREATE_BURST).set(self.burst)
        p = f"afd:quota:{{{account}}}:"
        self.keys = {n: p + n for n in ("tat", "leases", "limit", "pause", "cool", "wake")}
        self._acquire = redis.register_script(_QUOTA_ACQUIRE)
        self._renew = redis.register_script(_QUOTA_HEARTBEAT)
        self._free = redis.register_script(_QUOTA_RELEASE)
        self._aimd = redis.register_script(_QUOTA_AIMD)
        self._pause = redis.register_script(_QUOTA_PAUSE)
        self._snap = redis.register_script(_QUOTA_SNAPSHOT)
        self._listening = False  # a task of this process is blocked on the Redis wake list
        self._local_waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def interval_ms(self) -> float:
        """GCRA emission interval: milliseconds per create at the sustained rate."""
        return 60_000.0 / self.create_rate_per_min

    async def _op(self, aw: Awaitable[T]) -> T:
        return await asyncio.wait_for(aw, self.op_timeout_s)

    def _k(self, *names: str) -> list[str]:
        return [self.keys[n] for n in names]

    async def try_acquire(self, *, consume_rate: bool = True) -> tuple[Optional[Lease], str, float]:
        """One atomic admission attempt.

        Returns `(lease, "ok", 0.0)` or `(None, reason, wait_s)` where `wait_s`
        is the server's estimate of when trying again can succeed.
        `consume_rate=False` takes only a slot (adopting a job that already exists).
        """
        lease_id = uuid.uuid4().hex
        ok, reason, wait_ms, now_ms = await self._op(self._acquire(
            keys=self._k("tat", "leases", "limit", "pause"),
            args=[repr(self.interval_ms), self.burst, self.max_in_flight,
                  repr(self.lease_ttl_s * 1000.0), lease_id, 1 if consume_rate else 0],
        ))
        reason = reason.decode() if isinstance(reason, bytes) else str(reason)
        if int(ok) == 1:
            return Lease(self, lease_id, float(now_ms) / 1000.0), "ok", 0.0
        return None, reason, max(0.0, float(wait_ms) / 1000.0)

    async def acquire(self, timeout_s: float, *, consume_rate: bool = True) -> Lease:
        """Wait for a rate token and a lease slot together.

        Raises:
            QuotaTimeout: nothing admitted within `timeout_s`.
        """
        start = time.monotonic()
        deadline = start + timeout_s
        while True:
            lease, reason, wait_s = await self.try_acquire(consume_rate=consume_rate)
            if lease is not None:
                self._metric_grant(consume_rate, time.monotonic() - start)
                return lease
            self._metric_denial(reason)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QuotaTimeout(self.account, reason, time.monotonic() - start)
            if reason == "full":
                await self._wait_for_slot(max(0.01, min(wait_s, remaining, self.max_block_s)))
            else:
                await asyncio.sleep(min(wait_s, remaining) + 0.0005)

    async def _wait_for_slot(self, block_s: float) -> None:
        """Wait up to `block_s` for a slot to free: one task of this process listens on the Redis wake
        list (a release anywhere), the others on this process's own releases, which wake one of them
        at once (`_wake_local`) instead of after a hop through Redis to whichever process's waiter
        is first in line. Every wait is bounded, so a missed wake-up costs at most `block_s`.
        """
        if self._listening:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._local_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, block_s)
            except asyncio.TimeoutError:
                pass
            finally:
                if fut in self._local_waiters:
                    self._local_waiters.remove(fut)
            return
        self._listening = True
        try:
            await asyncio.wait_for(self.redis.blpop([self.keys["wake"]], timeout=block_s), block_s + self.op_timeout_s)
        finally:
            self._listening = False
            self._wake_local()  # one local waiter tries too, and listens next if the slot went elsewhere

    def _wake_local(self) -> None:
        """Wake one task of this process waiting for a slot (a slot was freed here, or the listener left)."""
        while self._local_waiters:
            fut = self._local_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _metric_grant(self, consume_rate: bool, waited_s: float) -> None:
        if self.metrics is None:
            return
        if consume_rate:
            self.metrics(M.QUOTA_GRANTS, kind="create").inc()
        self.metrics(M.QUOTA_GRANTS, kind="slot").inc()
        self.metrics(M.QUOTA_WAIT).observe(waited_s)

    def _metric_denial(self, reason: str) -> None:
        if self.metrics is not None and reason in ("rate", "full"):
            self.metrics(M.QUOTA_DENIALS, kind="create" if reason == "rate" else "slot").inc()

    async def export_snapshot(self) -> dict[str, Any]:
        """Read `snapshot()` and set the account gauges (in-flight jobs, adaptive limit); returns it."""
        snap = await self.snapshot()
        if self.metrics is not None:
            self.metrics(M.QUOTA_IN_FLIGHT).set(snap["in_flight"])
            self.metrics(M.QUOTA_IN_FLIGHT_LIMIT).set(snap["limit"])
        return snap

    async def adopt(self) -> Lease:
        """Insert a lease for a job that already exists at the provider (resumed by id).

        Takes no rate token and ignores the limit: the job is in flight whether or
        not a slot is free, and counting it keeps new creates honest.
        """
        lease_id = uuid.uuid4().hex
        await self._op(self._renew(keys=self._k("leases"), args=[lease_id, repr(self.lease_ttl_s * 1000.0)]))
        return Lease(self, lease_id, time.time())

    async def _heartbeat(self, lease_id: str) -> bool:
        r = await self._op(self._renew(keys=self._k("leases"), args=[lease_id, repr(self.lease_ttl_s * 1000.0)]))
        return int(r) == 1

    async def _release(self, lease_id: str) -> bool:
        r = await self._op(self._free(keys=self._k("leases", "wake"), args=[lease_id, self.max_in_flight]))
        if int(r) == 1:
            self._wake_local()
        return int(r) == 1

    async def _adjust(self, decrease: bool) -> float:
        new, decreased = await self._op(self._aimd(
            keys=self._k("limit", "cool", "wake"),
            args=[1 if decrease else 0, self.max_in_flight, self.aimd_min_limit, self.aimd_decrease,
                  self.aimd_increase, repr(self.aimd_cooldown_s * 1000.0)],
        ))
        if int(decreased) and self.metrics is not None:
            self.metrics(M.QUOTA_DECREASES).inc()
        return float(new)

    async def on_success(self) -> float:
        """Additive increase after a successful create; returns the new limit."""
        return await self._adjust(False)

    async def on_throttle(self, retry_after_s: Optional[float] = None) -> float:
        """Multiplicative decrease on a RATE_LIMITED / CONCURRENCY_FULL signal.

        Also pauses every actor for `retry_after_s` when the provider gave one.
        Returns the new limit.
        """
        if retry_after_s is not None and retry_after_s > 0:
            await self.pause_for(retry_after_s)
        return await self._adjust(True)

    async def pause_for(self, seconds: float) -> float:
        """No create on the account for `seconds` (extends, never shortens, a pause).

        Returns the pause-until time (epoch seconds, Redis server clock).
        """
        r = await self._op(self._pause(keys=self._k("pause"), args=[repr(float(seconds) * 1000.0)]))
        return float(r) / 1000.0

    async def snapshot(self) -> dict[str, Any]:
        """Metrics view: `tokens` (float, 0..burst), `in_flight` (live leases),
        `limit` (AIMD), `paused_until` (epoch seconds or None), `server_time`."""
        tokens, n, limit, pause, now = await self._op(self._snap(
            keys=self._k("tat", "leases", "limit", "pause"),
            args=[repr(self.interval_ms), self.burst, self.max_in_flight],
        ))
        pause_s = float(pause) / 1000.0
        now_s = float(now) / 1000.0
        return {
            "tokens": float(tokens),
            "in_flight": int(n),
            "limit": float(limit),
            "paused_until": pause_s if pause_s > now_s else None,
            "server_time": now_s,
        }

    def state_dict(self) -> dict[str, Any]:
        """The configuration (the live state is in Redis and outlives any actor)."""
        return {k: getattr(self, k) for k in (
            "account", "create_rate_per_min", "burst", "max_in_flight", "lease_ttl_s",
            "aimd_decrease", "aimd_increase", "aimd_min_limit", "aimd_cooldown_s")}
