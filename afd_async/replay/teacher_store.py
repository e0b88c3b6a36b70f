"""Where a learner finds the teacher clip a pair refers to.

A `Pair` carries only `teacher_ref`; the clip itself lives once in the teacher
cache (it is paid for, and every re-roll of the student side reuses it).
`TeacherClipStore` is the one method a learner needs; the teacher cache
satisfies it through `afd_async.teacher.clips.CacheClipStore`, the one reader
of teacher clips (the feeder's, the test cluster's and the tests'), and
`TeacherClipMissing` is the one error for a clip that is not there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import torch


class TeacherClipMissing(KeyError):
    """No clip under this ref (never stored, expired or evicted)."""


@dataclass(frozen=True, eq=False)
class TeacherClip:
    """A decoded teacher clip.

    Attributes:
        frames: `(T, H, W, 3)` uint8 RGB.
        fps: frames per second.
        meta: the teacher's record (provider, model, job_id, latency_s, video_seconds, usage,
            possible_duplicate, source = the provider's own fps/size/frames, prompt, seed); may be empty.
    """

    frames: torch.Tensor
    fps: float
    meta: Mapping[str, Any] = field(default_factory=dict)

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

