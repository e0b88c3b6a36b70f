"""Replay on Redis Streams: the prompt-paired stream, its consumers and staleness control.

Pieces (each a small module, collaborators injected, every wait timed):

- `Pair`, `encode_pair` / `decode_pair`: the record and its schema-versioned messages;
- `PairWriter`: appends pairs (large payloads as TTL'd blobs, written first, atomically);
- `PairReader`: one consumer of a group (one group per learner): at-least-once,
  dedupe by `pair_id`, reclaim from dead consumers, dead letters;
- `trim_acked`: trims only what every group acknowledged;
- `direct_read`, `heap`: how a reader keeps a 100 KB pair to one copy (the kernel's) and no page faults;
- `StalenessFilter`: the feeder's drop-and-count check (admission and re-rolls: `runtime/groups.py`);
- `TeacherClip`, `TeacherClipStore`: where a learner finds a pair's teacher clip.
"""

from __future__ import annotations

from afd_async.replay.pair import PAIR_SCHEMA, Pair, decode_meta, decode_pair, encode_pair
from afd_async.replay.reader import PairReader, ensure_group
from afd_async.replay.staleness import StalenessFilter
from afd_async.replay.teacher_store import TeacherClip, TeacherClipMissing, TeacherClipStore
from afd_async.replay.trim import oldest_needed_id, trim_acked
from afd_async.replay.writer import DEFAULT_STREAM, PairWriter, blob_key

__all__ = [
    "DEFAULT_STREAM", "PAIR_SCHEMA", "Pair", "PairReader", "PairWriter", "StalenessFilter", "TeacherClip",
    "TeacherClipMissing", "TeacherClipStore", "blob_key", "decode_meta", "decode_pair", "encode_pair",
    "ensure_group", "oldest_needed_id", "trim_acked",
]
