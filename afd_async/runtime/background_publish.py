"""Publishing θ_old off the learner's critical path: snapshot now, hash and serve on a thread.

    for step:
        NFT step → θ_old soft update (version v)
        publisher.submit(v, θ_old, then=set L = v in Redis)   # waits for v − 1's publish if still running,
                                                             # snapshots θ_old, returns
        … the next step runs while v is copied, hashed, served, and then `then` runs …
    publisher.flush()               # before the run's end: every submitted version is served

Exactness: the snapshot is taken inside `submit`, before the next step can change θ_old, so
version v's weights are θ_old as that step left it, bit for bit. Order: at most one publish
is in flight and `then` (the Redis learner version) runs only once v is served, so the
invariant of `student_learner.py` holds (every L an actor is admitted under is served).
An exception in the thread is raised, as `PublishFailed`, by the next `submit` or `flush`:
a failed publish stops the learner rather than leaving actors on old weights unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

import torch

from afd_async.runtime.one_in_flight import OneInFlight
from afd_async.seams import WeightSink

__all__ = ["BackgroundPublisher", "PublishFailed"]


class PublishFailed(RuntimeError):
    """A background publish raised; the cause is chained."""


class BackgroundPublisher:
    """Wraps a `WeightSink` so `submit` costs a snapshot copy instead of a full publish.

    Args:
        sink: the real publisher (`WeightPublisher`, or `NullPublisher` on ranks > 0).
    """

    def __init__(self, sink: WeightSink) -> None:
        self.sink = sink
        self._worker = OneInFlight("weights-publish", error=PublishFailed, what="publishing weights version")
        self._snapshot: dict[str, torch.Tensor] = {}  # reused: the previous publish is done before it is rewritten

    def submit(self, version: int, state_dict: Mapping[str, torch.Tensor], then: Callable[[], None] = lambda: None
               ) -> None:
        """Snapshot `state_dict` as `version`, publish it on the thread, then call `then` there.

        Raises:
            PublishFailed: the previous background publish failed.
        """
        self.flush()
        snap = {}
        for name, t in state_dict.items():
            buf = self._snapshot.get(name)
            if buf is None or buf.shape != t.shape or buf.dtype != t.dtype or buf.device != t.device:
                buf = torch.empty_like(t, memory_format=torch.contiguous_format)
            snap[name] = buf.copy_(t.detach())
        self._snapshot = snap
        self._worker.submit(version, self._publish, version, snap, then)

    def _publish(self, version: int, snap: dict[str, torch.Tensor], then: Callable[[], None]) -> None:
        self.sink.publish(version, snap)
        then()

    def flush(self) -> None:
        """Wait until the submitted version is published and announced.

        Raises:
            PublishFailed: it failed (the error is not raised again).
        """
        self._worker.wait()

    def close(self) -> None:
        """Finish the publish in flight (raising its error), then stop the thread."""
        self._worker.close()
