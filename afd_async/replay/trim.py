"""Trim the pair stream below what every consumer group has acknowledged.

Redis 7.0 has no "trim only acknowledged entries" option: `XADD MAXLEN` or
`XTRIM MAXLEN` would delete pairs a slow group has not read yet. Instead the
stream is cut with `XTRIM MINID` at the oldest entry that some group still
needs:

    for each group g:
        need(g) = min(oldest id in g's PEL, successor of g's last-delivered-id)
    XTRIM stream MINID min_g need(g)       # deletes ids strictly below

Invariant: an entry is deleted only when every group has had it delivered and
acknowledged it. The computation needs no lock: a group's last-delivered id and
the oldest id of its PEL only grow while we look, so a bound read slightly early
is lower, never higher (the exception is `XGROUP SETID` to an older id, which
operators must not do while trimming runs; a group created later with start id
"0" finds only what is left).

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


def format_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


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


def trim_acked(client: redis.Redis, stream: str) -> int:
    """Delete the entries every group has acknowledged; returns how many were deleted."""
    bound = oldest_needed_id(client, stream)
    if bound is None:
        return 0
    return int(client.xtrim(stream, minid=format_id(bound), approximate=False))
