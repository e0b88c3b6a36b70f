"""Append pairs to the Redis pair stream.

Stream entry layout (fields):

- `m`: the `pair` message (always; small);
- `t`: the `pair_tensors` message, when it is at most `inline_max_bytes`; else
- `b`: the key of a blob holding the `pair_tensors` message, with a TTL.

`write_many` appends a batch (a rollout group) in one round trip and one
MULTI/EXEC transaction: the group's entries appear together or not at all, and
a blob is written before its stream entry, so a reader never sees an entry
whose blob was not written (it may see one whose blob has since expired: the
reader dead-letters it with that reason). The tensors go from their own memory
to the socket (`codec.msg.pack_parts` through `store.pipeline`): their bytes
are copied by the kernel only, and written to Redis once (inline or blob,
never both).

The TTL bounds blob memory even when a consumer group stops reading and the
stream cannot be trimmed below its unread entries (see `trim.trim_acked`); it
must exceed the longest time a pair may wait unread (a few learner steps under
the staleness bound).

The writer never trims the stream (Redis 7.0 has no "trim only acknowledged"
option; `MAXLEN` would delete unread pairs).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from afd_async.replay.pair import Pair, encode_pair
from afd_async.store.pipeline import Arg, execute

DEFAULT_STREAM = "afd:pairs"
F_META, F_TENSORS, F_BLOB = b"m", b"t", b"b"


def blob_key(stream: str, pair_id: str) -> str:
    """Key of the payload blob of `pair_id` in `stream` (a retried write overwrites the same blob)."""
    return f"{stream}:blob:{pair_id}"


class PairWriter:
    """Writes pairs to one stream. Use as a context manager; the client is not owned.

    Args:
        client: redis-py client; its `socket_timeout` bounds every call.
        stream: stream key.
        blob_ttl_s: expiry of payload blobs.
        inline_max_bytes: payloads (packed tensors) up to this size go inline in the
            entry; larger ones go to a blob. 0 sends every payload to a blob. Default
            1 MiB from `benchmarks/bench_replay.py`: inline is faster at ~100 KB (one
            round trip less per read), blobs at ~2 MB, and blobs keep a stalled
            group from pinning payload memory.

    Example:
        with PairWriter(r, stream="afd:pairs") as w:
            stream_ids = w.write_many(group_pairs)  # one round trip
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str = DEFAULT_STREAM,
        blob_ttl_s: float = 3600.0,
        inline_max_bytes: int = 1 << 20,
    ) -> None:
        if blob_ttl_s <= 0:
            raise ValueError(f"blob_ttl_s must be > 0, got {blob_ttl_s}")
        if inline_max_bytes < 0:
            raise ValueError(f"inline_max_bytes must be >= 0, got {inline_max_bytes}")
        self._r = client
        self.stream = stream
        self.blob_ttl_ms = max(1, int(blob_ttl_s * 1000))
        self.inline_max_bytes = inline_max_bytes
        self.written = 0
        self.written_bytes = 0
        self.blobs = 0
        self._closed = False

    def write(self, pair: Pair) -> str:
        """Append `pair`; returns its stream id (`write_many` of one)."""
        return self.write_many([pair])[0]

    def write_many(self, pairs: Sequence[Pair]) -> list[str]:
        """Append `pairs` in order, atomically, in one round trip; returns their stream ids.

        At-least-once: a retry after a connection error may append duplicates,
        which readers drop by `pair_id` (a retried blob overwrites the same key).
        """
        if self._closed:
            raise RuntimeError("PairWriter is closed")
        commands: list[list[Arg]] = []
        nbytes = blobs = 0
        for pair in pairs:
            meta, tensors = encode_pair(pair)
            size = sum(memoryview(p).nbytes for p in tensors)
            if size <= self.inline_max_bytes:
                commands.append(["XADD", self.stream, "*", F_META, meta, F_TENSORS, tensors])
            else:
                key = blob_key(self.stream, pair.pair_id)
                commands.append(["SET", key, tensors, "PX", self.blob_ttl_ms])
                commands.append(["XADD", self.stream, "*", F_META, meta, F_BLOB, key])
                blobs += 1
            nbytes += len(meta) + size
        replies = execute(self._r, commands, transaction=True)
        ids = [r.decode() for cmd, r in zip(commands, replies) if cmd[0] == "XADD"]
        self.written += len(ids)
        self.written_bytes += nbytes
        self.blobs += blobs
        return ids

    def state_dict(self) -> dict[str, object]:
        """Counters and settings (the stream itself is the durable state)."""
        return {
            "stream": self.stream,
            "written": self.written,
            "written_bytes": self.written_bytes,
            "blobs": self.blobs,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state.get("stream") != self.stream:
            raise ValueError(f"state is for stream {state.get('stream')!r}, this writer writes {self.stream!r}")
        self.written = int(state["written"])  # type: ignore[arg-type]
        self.written_bytes = int(state["written_bytes"])  # type: ignore[arg-type]
        self.blobs = int(state["blobs"])  # type: ignore[arg-type]

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> "PairWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PairWriter", "blob_key", "DEFAULT_STREAM", "F_META", "F_TENSORS", "F_BLOB"]
