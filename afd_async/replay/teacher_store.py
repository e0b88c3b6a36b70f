"""Where a learner finds the teacher clip a pair refers to.

A `Pair` carries only `teacher_ref`; the clip itself lives once in the teacher
cache (it is paid for, and every re-roll of the student side reuses it).
`TeacherClipStore` is the one method a learner needs. The teacher cache
(`afd_async/teacher/cache.py`, another piece) satisfies it by adding a `get`
that returns a `TeacherClip`; `RedisTeacherClipStore` is a small
implementation used by the replay tests and the local cluster until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, runtime_checkable

import redis
import torch

from afd_async.codec.msg import MessageError, pack, unpack

CLIP_KIND = "teacher_clip"
CLIP_SCHEMA = 1


class TeacherClipMissing(KeyError):
    """No clip under this ref (never stored, expired or evicted)."""


@dataclass(frozen=True, eq=False)
class TeacherClip:
    """A decoded teacher clip.

    Attributes:
        frames: `(T, H, W, 3)` uint8 RGB.
        fps: frames per second.
    """

    frames: torch.Tensor
    fps: float

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, torch.Tensor) or f.dtype != torch.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(f"teacher frames must be a (T, H, W, 3) uint8 tensor, got {getattr(f, 'shape', f)!r}")
        if not isinstance(self.fps, (int, float)) or not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps!r}")


@runtime_checkable
class TeacherClipStore(Protocol):
    """Read access to teacher clips by ref.

    Contract: `get(ref)` returns the clip stored under `ref` or raises
    `TeacherClipMissing`; it never returns a clip of another ref.
    """

    def get(self, ref: str) -> TeacherClip: ...


class RedisTeacherClipStore:
    """Teacher clips as `teacher_clip` messages in Redis keys `{prefix}:{ref}`.

    Args:
        client: a redis-py client (not owned; never closed here).
        prefix: key prefix.
        ttl_s: expiry of each clip key; None keeps clips until deleted.
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "afd:teacher_clip", ttl_s: Optional[float] = None) -> None:
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0 or None, got {ttl_s}")
        self._r = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    def key(self, ref: str) -> str:
        return f"{self.prefix}:{ref}"

    def put(self, ref: str, clip: TeacherClip) -> str:
        """Store `clip` under `ref`; returns `ref`."""
        data = pack({"kind": CLIP_KIND, "schema": CLIP_SCHEMA, "ref": ref, "frames": clip.frames, "fps": float(clip.fps)})
        px = None if self.ttl_s is None else max(1, int(self.ttl_s * 1000))
        self._r.set(self.key(ref), data, px=px)
        return ref

    def get(self, ref: str) -> TeacherClip:
        data = self._r.get(self.key(ref))
        if data is None:
            raise TeacherClipMissing(ref)
        return self._decode(ref, data)

    def get_many(self, refs: Sequence[str]) -> list[TeacherClip]:
        """Clips for `refs` in order, in one round trip. Raises `TeacherClipMissing` for the first absent ref."""
        pipe = self._r.pipeline(transaction=False)
        for ref in refs:
            pipe.get(self.key(ref))
        out = []
        for ref, data in zip(refs, pipe.execute()):
            if data is None:
                raise TeacherClipMissing(ref)
            out.append(self._decode(ref, data))
        return out

    @staticmethod
    def _decode(ref: str, data: bytes) -> TeacherClip:
        msg = unpack(data, expect_kind=CLIP_KIND, schemas=(CLIP_SCHEMA,))
        if msg.get("ref") != ref:
            raise MessageError(f"clip stored under {ref!r} says it is {msg.get('ref')!r}")
        try:
            return TeacherClip(frames=msg.get("frames"), fps=msg.get("fps"))  # type: ignore[arg-type]
        except ValueError as e:
            raise MessageError(f"invalid teacher clip {ref!r}: {e}") from e
