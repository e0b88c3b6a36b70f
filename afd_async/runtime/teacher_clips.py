"""The student side's two questions to the teacher cache: is a clip ready, and its frames."""

from __future__ import annotations

from typing import Optional

import numpy as np
import redis

from afd_async.config.teacher import TeacherConfig
from afd_async.teacher.clips import clip_record_key, load_teacher_clip, teacher_clip_key


class TeacherClipMissing(KeyError):
    """A pair names a teacher clip that is not (or no longer) in the cache."""


def teacher_clip_ref(client: redis.Redis, teacher: TeacherConfig, prompt: str, seed: int) -> Optional[str]:
    """The clip's cache key if the teacher actor has cached it, else None (one EXISTS, no payload read)."""
    ref = teacher_clip_key(teacher, prompt, seed)
    return ref if client.exists(clip_record_key(ref)) else None


def load_teacher_frames(client: redis.Redis, ref: str) -> np.ndarray:
    """uint8 `(F, H, W, 3)` at the student's size."""
    got = load_teacher_clip(client, ref)
    if got is None:
        raise TeacherClipMissing(f"teacher clip {ref} is not in the cache")
    return np.array(got[0], copy=True)  # the cache hands out read-only views
