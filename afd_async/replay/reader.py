"""Read pairs from the pair stream through a consumer group (one group per learner).

Delivery is at-least-once: an entry stays in the group's pending list (PEL)
until acknowledged; a consumer that dies leaves its entries pending, and
another consumer takes them over with `reclaim` (XAUTOCLAIM).

Call order (one learner):

    with PairReader(r, stream="afd:pairs", group="student", consumer="student-0") as rd:
        while training:
            batch = rd.reclaim(min_idle_ms=30_000) or rd.read(count=8, block_ms=1000)
            train_on([p for _, p in batch])
            rd.ack([sid for sid, _ in batch])

Invariants:
    * Dedupe by `pair_id`, per group: the first stream entry read for a pair id
      owns it (a Redis hash per time bucket, TTL 2 × `dedupe_window_s`); any other
      entry with that pair id (a writer's retry) is acknowledged and never
      returned. A redelivered or reclaimed owner entry is returned again.
    * `ack` is atomic per entry and acknowledges only entries this consumer still
      owns in the PEL, so after another consumer reclaimed an entry the old owner
      cannot acknowledge it (the result says so): within one group a pair is
      trained at most once, except when a consumer outlives `min_idle_ms` of a
      reclaimer (then twice, never zero times).
    * An entry that cannot become a `Pair` (corrupt or foreign bytes, unknown
      schema, expired blob) goes to the dead-letter stream `{stream}:dead` with its
      reason and is acknowledged in the same transaction: it never blocks the group.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import redis
from redis.commands.core import Script

from afd_async.codec.msg import MessageError
from afd_async.replay.direct_read import execute_direct
from afd_async.replay.heap import keep_freed_heap
from afd_async.replay.pair import Pair, decode_meta, decode_pair
from afd_async.replay.writer import DEFAULT_STREAM, F_BLOB, F_META, F_TENSORS
from afd_async.store.pipeline import Arg, execute

# Dedupe claim. KEYS[1] stream; ARGV: group, dedupe key prefix, window (s), then (stream id, pair id) pairs.
# Returns 1 (this entry owns its pair id: return it) or 0 (a duplicate: acknowledged here) per pair.
# The previous bucket is looked at only while it exists. Only commands the feeder's ACL user may run
# on the dedupe keys (`security.redis_acl`: HGET, HSET, EXPIRE).
_CLAIM = """
local t = redis.call('TIME')
local window = tonumber(ARGV[3])
local bucket = math.floor(tonumber(t[1]) / window)
local cur, prev = ARGV[2] .. bucket, ARGV[2] .. (bucket - 1)
local check_prev = redis.call('EXISTS', prev) == 1
local out, dup = {}, {}
for i = 4, #ARGV, 2 do
  local sid, pid = ARGV[i], ARGV[i + 1]
  local owner = redis.call('HGET', cur, pid) or (check_prev and redis.call('HGET', prev, pid))
  if not owner then
    redis.call('HSET', cur, pid, sid)
    owner = sid
  end
  if owner == sid then out[#out + 1] = 1 else
    dup[#dup + 1] = sid
    out[#out + 1] = 0
  end
end
for i = 1, #dup, 1000 do redis.call('XACK', KEYS[1], ARGV[1], unpack(dup, i, math.min(i + 999, #dup))) end
redis.call('EXPIRE', cur, 2 * window)
return out
"""

# Owner-checked ack. KEYS[1] stream; ARGV: group, consumer, first id, last id, cap, then the ids.
# One XPENDING lists this consumer's entries between the first and last id (up to `cap`; a full page
# means others of ours lie in between: then the ids are checked one by one), one XACK acknowledges.
# Returns 1 (acknowledged) or 0 (not pending for this consumer: reclaimed by another, or acked) per id.
_ACK = """
local owned = {}
local cap = tonumber(ARGV[5])
local page = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[4], cap, ARGV[2])
if #page < cap then
  for _, e in ipairs(page) do owned[e[1]] = true end
else
  for i = 6, #ARGV do
    if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2]) > 0 then owned[ARGV[i]] = true end
  end
end
local out, ids = {}, {}
for i = 6, #ARGV do
  if owned[ARGV[i]] then
    owned[ARGV[i]] = nil
    ids[#ids + 1] = ARGV[i]
    out[#out + 1] = 1
  else out[#out + 1] = 0 end
end
for i = 1, #ids, 1000 do redis.call('XACK', KEYS[1], ARGV[1], unpack(ids, i, math.min(i + 999, #ids))) end
return out
"""


def ensure_group(client: redis.Redis, stream: str, group: str, start_id: str = "0") -> bool:
    """Create `group` on `stream` (and the stream) if absent; True when created.

    `start_id="0"` lets a new group read every entry still in the stream.
    """
    try:
        client.xgroup_create(stream, group, id=start_id, mkstream=True)
        return True
    except redis.ResponseError as e:
        if "BUSYGROUP" in str(e):
            return False
        raise


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class PairReader:
    """One consumer of one consumer group. The client is injected and not owned.

    Args:
        client: redis-py client with `decode_responses=False`; its `socket_timeout`
            (if set) must exceed `block_ms`.
        stream: pair stream key.
        group: consumer group (one per learner role: "student", "discriminator").
        consumer: this consumer's name, unique within the group and stable across
            restarts of the same worker (so `read(pending=True)` finds its entries).
        dedupe_window_s: how long a pair id is remembered for dedupe.
        dead_maxlen: approximate cap of the dead-letter stream.
        tune_heap: keep freed heap in this process (`replay.heap.keep_freed_heap`, process-wide):
            without it every batch page-faults its payload memory in afresh (~40 % of a read).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str = DEFAULT_STREAM,
        group: str,
        consumer: str,
        dedupe_window_s: int = 3600,
        dead_maxlen: int = 10_000,
        create_group: bool = True,
        tune_heap: bool = True,
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("PairReader needs a client with decode_responses=False (payloads are bytes)")
        if dedupe_window_s < 1:
            raise ValueError(f"dedupe_window_s must be >= 1, got {dedupe_window_s}")
        self._r = client
        self.stream, self.group, self.consumer = stream, group, consumer
        self.dead_stream = f"{stream}:dead"
        self.dedupe_window_s = int(dedupe_window_s)
        self.dead_maxlen = dead_maxlen
        self._claim = client.register_script(_CLAIM)
        self._ack = client.register_script(_ACK)
        self.last_id = "0-0"
        self.counters = {"read": 0, "returned": 0, "acked": 0, "ack_lost": 0, "duplicates": 0, "dead_lettered": 0, "reclaimed": 0, "deleted": 0}
        self._closed = False
        if tune_heap:
            keep_freed_heap()
        if create_group:
            ensure_group(client, stream, group)

    # -- reading -------------------------------------------------------------------------------
    def read(self, count: int, block_ms: Optional[int] = None, *, pending: bool = False,
             after: str = "0") -> list[tuple[str, Pair]]:
        """Up to `count` new pairs for this consumer.

        Args:
            count: max entries to read.
            block_ms: wait up to this long for new entries (None: do not wait).
            after: with `pending`, only entries with ids above this one (page through a long pending list).
            pending: re-read this consumer's own unacknowledged entries instead of
                new ones (after a restart under the same consumer name).
        """
        self._check_open()
        if block_ms is not None:
            timeout = self._r.get_connection_kwargs().get("socket_timeout")
            if block_ms < 1 or (timeout is not None and timeout * 1000 <= block_ms):
                raise ValueError(f"block_ms={block_ms} must be >= 1 and below the socket timeout ({timeout} s)")
        cmd: list[Arg] = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count]
        if block_ms is not None and not pending:
            cmd += ["BLOCK", block_ms]
        resp = execute_direct(self._r, [*cmd, "STREAMS", self.stream, after if pending else ">"])
        return self._process(_entries(resp))

    def reclaim(self, min_idle_ms: int, count: int = 100) -> list[tuple[str, Pair]]:
        """Take over up to `count` entries pending for more than `min_idle_ms` in any
        consumer of the group (a dead one), via XAUTOCLAIM, and return them as pairs."""
        self._check_open()
        cursor, claimed = "0-0", []
        while len(claimed) < count:
            resp = self._r.xautoclaim(self.stream, self.group, self.consumer, min_idle_ms, cursor, count=count - len(claimed))
            cursor = _s(resp[0])
            claimed.extend((_s(sid), f) for sid, f in resp[1] if f)
            self.counters["deleted"] += len(resp[2]) if len(resp) > 2 else 0
            if cursor == "0-0":
                break
        self.counters["reclaimed"] += len(claimed)
        return self._process(claimed)

    def _process(self, entries: list[tuple[str, dict]]) -> list[tuple[str, Pair]]:
        if not entries:
            return []
        self.counters["read"] += len(entries)
        metas: list[Any] = []
        blob_keys: list[bytes] = []
        for sid, fields in entries:
            try:
                meta = decode_meta(fields.get(F_META, b""))
            except MessageError as e:
                meta = MessageError(f"bad pair message: {e}")
            metas.append(meta)
            if not isinstance(meta, Exception) and F_TENSORS not in fields and F_BLOB in fields:
                blob_keys.append(fields[F_BLOB])
        blobs = iter(self._get_many(blob_keys))
        good: list[tuple[str, Pair]] = []
        dead: list[tuple[str, str, bytes]] = []
        for (sid, fields), meta in zip(entries, metas):
            if isinstance(meta, Exception):
                dead.append((sid, str(meta), fields.get(F_META, b"")))
                continue
            if F_TENSORS in fields:
                payload = fields[F_TENSORS]
            elif F_BLOB in fields:
                payload = next(blobs)
                if payload is None:
                    dead.append((sid, f"payload blob {_s(fields[F_BLOB])} expired or missing", fields[F_META]))
                    continue
            else:
                dead.append((sid, "entry has no payload field", fields[F_META]))
                continue
            try:
                good.append((sid, decode_pair(meta, payload)))
            except MessageError as e:
                dead.append((sid, f"bad payload: {e}", fields[F_META]))
        if dead:
            self._dead_letter(dead)
        if good:
            args: list[Any] = [self.group, f"{self.stream}:dedupe:{self.group}:", self.dedupe_window_s]
            for sid, pair in good:
                args += [sid, pair.pair_id]
            keep = self._eval(self._claim, args)
            self.counters["duplicates"] += sum(1 for k in keep if not int(k))
            good = [g for g, k in zip(good, keep) if int(k)]
        self.counters["returned"] += len(good)
        if good:
            self.last_id = good[-1][0]
        return good

    def _eval(self, script: Script, args: list[Any]) -> Any:
        """Run `script` on the stream with `args` (framed by `store.pipeline`: a third of redis-py's per-argument
        cost at 35 arguments); loads it once more when the server lost it (a restart)."""
        command: list[Arg] = ["EVALSHA", script.sha, 1, self.stream, *args]
        try:
            return execute(self._r, [command])[0]
        except redis.exceptions.NoScriptError:
            self._r.script_load(script.script)
            return execute(self._r, [command])[0]

    def _get_many(self, keys: list[bytes]) -> list[Optional[bytes]]:
        if not keys:
            return []
        if len(keys) == 1:
            return [self._r.get(keys[0])]
        return list(self._r.mget(keys))

    def _dead_letter(self, dead: list[tuple[str, str, bytes]]) -> None:
        pipe = self._r.pipeline(transaction=True)
        now = repr(time.time())
        for sid, reason, raw in dead:
            fields = {"stream_id": sid, "group": self.group, "consumer": self.consumer, "reason": reason[:2000], "at": now,
                      "meta": bytes(raw[:65536])}
            pipe.xadd(self.dead_stream, fields, maxlen=self.dead_maxlen, approximate=True)
        pipe.xack(self.stream, self.group, *[sid for sid, _, _ in dead])
        pipe.execute()
        self.counters["dead_lettered"] += len(dead)

    # -- acknowledging -------------------------------------------------------------------------
    def ack(self, ids: Sequence[str]) -> list[str]:
        """Acknowledge entries this consumer still owns; returns the ids acknowledged.

        An id missing from the result was reclaimed by another consumer or already
        acknowledged (counted in `counters["ack_lost"]`).
        """
        self._check_open()
        if not ids:
            return []
        first, last = min(ids, key=_id_key), max(ids, key=_id_key)
        res = self._eval(self._ack, [self.group, self.consumer, first, last, 4 * len(ids) + 16, *ids])
        done = [sid for sid, r in zip(ids, res) if int(r) == 1]
        self.counters["acked"] += len(done)
        self.counters["ack_lost"] += len(ids) - len(done)
        return done

    def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        """The oldest `count` dead-letter records (for operators and tests)."""
        return [{_s(k): (v if k == b"meta" else _s(v)) for k, v in f.items()} for _, f in self._r.xrange(self.dead_stream, count=count)]

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Identity, position and counters. The PEL, the group's last-delivered id and the
        dedupe window live in Redis and survive a restart of this process by themselves."""
        return {"stream": self.stream, "group": self.group, "consumer": self.consumer, "last_id": self.last_id,
                "dedupe_window_s": self.dedupe_window_s, "counters": dict(self.counters)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("stream", "group"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"state is for {key} {state.get(key)!r}, this reader uses {getattr(self, key)!r}")
        self.last_id = str(state["last_id"])
        self.counters.update({k: int(v) for k, v in state["counters"].items()})

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("PairReader is closed")

    def close(self) -> None:
        """Stop using the reader. Never deletes the consumer (that would drop its pending entries)."""
        self._closed = True

    def __enter__(self) -> "PairReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _entries(resp: Any) -> list[tuple[str, dict]]:
    """Entries of a raw XREADGROUP reply for one stream (RESP2 list or RESP3 map), fields as a dict
    (large values as `bytearray`: see `direct_read`); entries deleted since delivery (no fields) are left out."""
    if not resp:
        return []
    items = next(iter(resp.values())) if isinstance(resp, dict) else resp[0][1]
    return [(sid.decode(), dict(zip(f[::2], f[1::2]))) for sid, f in items if f]


def _id_key(sid: str) -> tuple[int, int]:
    """Sort key of a stream id `"ms-seq"`."""
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)
