"""Trim the pair stream below what every consumer group has acknowledged.

Redis 7.0 has no "trim only acknowledged entries" option: `XADD MAXLEN` or
`XTRIM MAXLEN` would delete pairs a slow group has not read yet. Instead the
stream is cut with `XTRIM MINID` at the oldest entry that some group still
needs (`trim_acked` does this in one Lua script, so it is atomic):

    for each group g:
        need(g) = min(oldest id in g's PEL, successor of g's last-delivered-id)
    XTRIM stream MINID min_g need(g)       # deletes ids strictly below

Invariant: an entry is deleted only when every group has had it delivered and
acknowledged it. (`oldest_needed_id`, the same bound read from Python without
the script, is safe too: a group's last-delivered id and the oldest id of its
PEL only grow, so a bound read early is lower, never higher.) Operators must not
`XGROUP SETID` a group backwards while trimming runs; a group created later with
start id "0" finds only what is left.

Memory stays bounded when every group keeps reading; a stalled group pins the
stream entries but not the payload blobs, which expire (see `writer`).
"""

from __future__ import annotations

from typing import Optional

import redis

from afd_async.replay.reader import _s

StreamId = tuple[int, int]


def parse_id(sid: str | bytes) -> StreamId:
    """`"ms-seq"` -> `(ms, seq)`."""
    text = _s(sid)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def successor(sid: StreamId) -> StreamId:
    """The smallest stream id greater than `sid`."""
    ms, seq = sid
    return (ms + 1, 0) if seq == 2**64 - 1 else (ms, seq + 1)


def oldest_needed_id(client: redis.Redis, stream: str) -> Optional[StreamId]:
    """The oldest entry id that some group has not acknowledged; None when the stream
    has no groups (then nothing may be trimmed: no one has read anything)."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError as e:
        if "no such key" in str(e).lower():
            return None
        raise
    if not groups:
        return None
    bound: Optional[StreamId] = None
    for g in groups:
        need = successor(parse_id(g["last-delivered-id"]))
        if int(g["pending"]) > 0:
            summary = client.xpending(stream, g["name"])
            if summary.get("min") is not None:
                need = min(need, parse_id(summary["min"]))
        bound = need if bound is None else min(bound, need)
    return bound


_TRIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local function parse(id)
  local d = string.find(id, '-')
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function lt(ams, aseq, bms, bseq) return ams < bms or (ams == bms and aseq < bseq) end
local bms, bseq = nil, nil
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local ms, seq = parse(f['last-delivered-id'])
  seq = seq + 1
  if f['pending'] > 0 then
    local p = redis.call('XPENDING', KEYS[1], f['name'])
    if p[2] then
      local pms, pseq = parse(p[2])
      if lt(pms, pseq, ms, seq) then ms, seq = pms, pseq end
    end
  end
  if bms == nil or lt(ms, seq, bms, bseq) then bms, bseq = ms, seq end
end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f-%.0f', bms, bseq))
"""


def trim_acked(client: redis.Redis, stream: str) -> int:
    """Delete the entries every group has acknowledged; returns how many were deleted.

    One Lua script (atomic, one round trip) computes the same bound as
    `oldest_needed_id` and trims. Ids are compared as Lua numbers, exact for the
    millisecond ids Redis generates (sequence numbers below 2**53).
    """
    return int(client.register_script(_TRIM)(keys=[stream]))
