"""How the student side finds a teacher clip the teacher actor cached.

The teacher actor writes each clip under the digest of its request
(provider, model, prompt, params, seed), already resampled to the student's
size, fps and length. A reader that knows the prompt and seed computes the same
digest without talking to the actor:

    ref = teacher_clip_key(cfg.teacher, prompt, seed)       # str, stable across processes
    got = load_teacher_clip(redis_client, ref)              # sync redis-py client
    if got is not None:
        frames, fps, meta = got                             # uint8 (F, H, W, 3), float, dict

`CacheClipStore` is the same read behind the replay's `TeacherClipStore`
protocol (`afd_async/replay/teacher_store.py`), so a learner resolves a pair's
`teacher_ref` (= this digest) straight from the teacher cache. Why a separate
synchronous reader rather than `TeacherCache` itself: the cache is async (the
actor's event loop) while learners and the student actor call a blocking
`get(ref)`; both read the same record format (`cache.decode_entry`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from afd_async.config.providers import canonical_provider
from afd_async.teacher.cache import CacheEntry, decode_entry
from afd_async.teacher.contract import JobRequest
from afd_async.teacher.journal import request_digest

if TYPE_CHECKING:
    import redis

    from afd_async.config.teacher import TeacherConfig
    from afd_async.replay.teacher_store import TeacherClip

__all__ = ["CACHE_NAMESPACE", "CacheClipStore", "aload_teacher_clip", "clip_record_key",
           "load_teacher_clip", "teacher_clip_key", "teacher_request"]

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


def _unpack(entry: CacheEntry) -> tuple[np.ndarray, float, dict[str, Any]]:
    meta = asdict(entry.meta)
    meta.update(prompt=entry.prompt, seed=entry.seed, key=entry.key, created_at=entry.created_at)
    return entry.clip.frames, float(entry.clip.fps), meta


def load_teacher_clip(redis_client: "redis.Redis", key: str, *, namespace: str = CACHE_NAMESPACE
                      ) -> Optional[tuple[np.ndarray, float, dict[str, Any]]]:
    """Read a cached clip with a synchronous client (`decode_responses=False`).

    Returns:
        `(frames, fps, teacher_meta)` — read-only uint8 `(F, H, W, 3)` at the student's
        size, its fps, and the meta dict (provider, model, job_id, latency_s, video_seconds,
        usage, possible_duplicate, source = the provider's own fps/size/frames, prompt, seed)
        — or None when the clip is not (yet, or any longer) there.

    Raises:
        SchemaVersionError: the record was written by an unknown schema.
    """
    blob = redis_client.get(clip_record_key(key, namespace))
    return None if blob is None else _unpack(decode_entry(blob))


async def aload_teacher_clip(redis_client: Any, key: str, *, namespace: str = CACHE_NAMESPACE
                             ) -> Optional[tuple[np.ndarray, float, dict[str, Any]]]:
    """`load_teacher_clip` for a `redis.asyncio` client."""
    blob = await redis_client.get(clip_record_key(key, namespace))
    return None if blob is None else _unpack(decode_entry(blob))


class CacheClipStore:
    """The teacher cache as a replay `TeacherClipStore`: `get(ref)` by request digest.

    Args:
        client: a synchronous redis-py client (`decode_responses=False`); not owned.
        namespace: the teacher cache's key namespace.
    """

    def __init__(self, client: "redis.Redis", *, namespace: str = CACHE_NAMESPACE) -> None:
        self._r = client
        self.namespace = namespace

    def get(self, ref: str) -> "TeacherClip":
        """The clip under `ref`; raises `TeacherClipMissing` if absent."""
        from afd_async.replay.teacher_store import TeacherClipMissing  # deferred: it imports torch, teacher actors never do

        got = load_teacher_clip(self._r, ref, namespace=self.namespace)
        if got is None:
            raise TeacherClipMissing(ref)
        return self._to_clip(got[0], got[1])

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
            entry = decode_entry(blob)
            out.append(self._to_clip(entry.clip.frames, entry.clip.fps))
        return out

    @staticmethod
    def _to_clip(frames: np.ndarray, fps: float) -> "TeacherClip":
        import torch  # deferred: teacher actors never import torch

        from afd_async.replay.teacher_store import TeacherClip  # deferred: it imports torch

        return TeacherClip(frames=torch.from_numpy(np.array(frames, dtype=np.uint8, copy=True)), fps=float(fps))
