"""In-process replay: the `PairSink` and `TeacherClipStore` contracts (`afd_async/seams.py`) without Redis,
for an actor and a learner in one process."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from afd_async.replay.pair import Pair
from afd_async.replay.teacher_store import TeacherClip, TeacherClipMissing


class MemoryPairLog:
    """Pairs in write order; `write` returns the pair's index as its id."""

    def __init__(self) -> None:
        self.pairs: list[Pair] = []
        self._lock = threading.Lock()

    def write(self, pair: Pair) -> str:
        return self.write_many([pair])[0]

    def write_many(self, pairs: Sequence[Pair]) -> list[str]:
        with self._lock:
            first = len(self.pairs)
            self.pairs.extend(pairs)
            return [f"{i}-0" for i in range(first, len(self.pairs))]

    def __enter__(self) -> MemoryPairLog:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class MemoryClipStore:
    """Teacher clips by ref in a dict."""

    def __init__(self) -> None:
        self._clips: dict[str, TeacherClip] = {}

    def put(self, ref: str, clip: TeacherClip) -> None:
        self._clips[ref] = clip

    def get(self, ref: str) -> TeacherClip:
        """The clip under `ref`, as a copy the caller may write (the Redis store's are, too)."""
        try:
            clip = self._clips[ref]
        except KeyError:
            raise TeacherClipMissing(ref) from None
        return TeacherClip(frames=clip.frames.clone(), fps=clip.fps, meta=dict(clip.meta))
