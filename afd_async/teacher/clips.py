"""How the student side finds a teacher clip the teacher actor cached: the one reader.

The teacher actor writes each clip under the digest of its request
(provider, model, prompt, params, seed), already resampled to the student's
size, fps and length. A reader that knows the prompt and seed computes the same
digest without talking to the actor:

    clips = CacheClipStore(redis_client)                    # sync redis-py client
    ref = clips.cached_ref(cfg.teacher, prompt, seed)       # the digest if cached, else None (one EXISTS)
    clip = clips.get(ref)                                   # TeacherClip: uint8 (F, H, W, 3) tensor, fps, meta

`CacheClipStore` is the replay's `TeacherClipStore` protocol
(`afd_async/replay/teacher_store.py`) over the teacher cache, and the only reader
of clip records: the feeder, the test cluster and the tests all go through it, and
an absent clip raises the protocol's one `TeacherClipMissing`. Why a synchronous
reader rather than `TeacherCache` itself: the cache is async (the actor's event
loop) while the feeder and the student actor call a blocking `get(ref)`; both read
the same record format (`cache.decode_entry`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from afd_async.config.providers import canonical_provider
from afd_async.teacher.cache import CacheEntry, decode_entry
from afd_async.teacher.contract import JobRequest
from afd_async.teacher.journal import request_digest

if TYPE_CHECKING:
    import redis

    from afd_async.config.teacher import TeacherConfig
    from afd_async.replay.teacher_store import TeacherClip

__all__ = ["CACHE_NAMESPACE", "CacheClipStore", "clip_record_key", "teacher_clip_key", "teacher_request"]

CACHE_NAMESPACE = "afd:teacher:cache"


def teacher_request(cfg: "TeacherConfig", prompt: str, seed: int) -> JobRequest:
    """The job the teacher actor sends for (prompt, seed) under this config."""
    return JobRequest(prompt=prompt, seed=int(seed), model=cfg.model, params=dict(cfg.params))


def teacher_clip_key(cfg: "TeacherConfig", prompt: str, seed: int) -> str:
    """The cache key (request digest) the teacher actor writes the clip of (prompt, seed) under."""
    return request_digest(canonical_provider(cfg.provider), teacher_request(cfg, prompt, seed))


def clip_record_key(ref: str, namespace: str = CACHE_NAMESPACE) -> str:
    """The Redis key holding the record of clip `ref`."""
    return f"{namespace}:clip:{ref}"


class CacheClipStore:
    """The teacher cache as a replay `TeacherClipStore`: `get(ref)` by request digest.

    Args:
        client: a synchronous redis-py client (`decode_responses=False`); not owned.
        namespace: the teacher cache's key namespace.
    """

    def __init__(self, client: "redis.Redis", *, namespace: str = CACHE_NAMESPACE) -> None:
        self._r = client
        self.namespace = namespace

    def cached_ref(self, cfg: "TeacherConfig", prompt: str, seed: int) -> Optional[str]:
        """The clip's ref if the teacher actor has cached (prompt, seed), else None (one EXISTS, no payload read)."""
        ref = teacher_clip_key(cfg, prompt, seed)
        return ref if self._r.exists(clip_record_key(ref, self.namespace)) else None

    def get(self, ref: str) -> "TeacherClip":
        """The clip under `ref`; raises `TeacherClipMissing` if absent (never stored, expired or evicted).

        Raises:
            SchemaVersionError: the record was written by an unknown schema.
        """
        return self.get_many([ref])[0]

    def get_many(self, refs: Sequence[str]) -> list["TeacherClip"]:
        """Clips for `refs` in order, one round trip; raises `TeacherClipMissing` for the first absent ref."""
        from afd_async.replay.teacher_store import TeacherClipMissing  # deferred: it imports torch, teacher actors never do

        pipe = self._r.pipeline(transaction=False)
        for ref in refs:
            pipe.get(clip_record_key(ref, self.namespace))
        out = []
        for ref, blob in zip(refs, pipe.execute()):
            if blob is None:
                raise TeacherClipMissing(ref)
            out.append(self._to_clip(decode_entry(blob)))
        return out

    @staticmethod
    def _to_clip(entry: CacheEntry) -> "TeacherClip":
        import torch  # deferred: teacher actors never import torch

        from afd_async.replay.teacher_store import TeacherClip  # deferred: it imports torch

        meta = asdict(entry.meta)
        meta.update(prompt=entry.prompt, seed=entry.seed, key=entry.key, created_at=entry.created_at)
        frames = torch.from_numpy(np.array(entry.clip.frames, dtype=np.uint8, copy=True))  # the record's are read-only
        return TeacherClip(frames=frames, fps=float(entry.clip.fps), meta=meta)
