"""The seams between roles as small Protocols (Acme's actor / learner / variable-client split).

    learner ◄── BatchSource ── feeder          learner ── WeightSink ──► WeightSource ──► actor (by version)
    actor ── PairSink ──► replay                feeder ── TeacherClipStore ──► teacher clips by ref

Each has two implementations, checked by one contract suite each (`tests/contract/`): the ZeroMQ / Redis one
that `afd run` uses between processes, and an in-process one (`transport/local.py`, `replay/memory.py`) for
a learner and an actor in one process. Roles are typed against these, not against the sockets.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol, Sequence, runtime_checkable

import torch

from afd_async.replay.pair import Pair
from afd_async.replay.teacher_store import TeacherClip, TeacherClipMissing, TeacherClipStore
from afd_async.transport.feed_wire import ReceivedBatch
from afd_async.transport.weights_subscriber import WeightsUpdate

__all__ = ["BatchSource", "PairSink", "TeacherClip", "TeacherClipMissing", "TeacherClipStore", "WeightSink",
           "WeightSource"]


@runtime_checkable
class BatchSource(Protocol):
    """What a learner pulls batches from.

    Contract: `next` returns batches in the order they were offered, each with a distinct `seq`, or raises
    `TransportTimeout` when none comes within `timeout_s`, or `FeedEnded` once the producer has no more;
    `ack(batch)` tells the producer the batch is consumed (the producer sees its token); a batch never
    acked goes back to the producer when the source closes.
    """

    def next(self, timeout_s: float) -> ReceivedBatch: ...

    def ack(self, batch: ReceivedBatch | int) -> None: ...


@runtime_checkable
class WeightSink(Protocol):
    """Where a learner publishes its weights under a version.

    Contract: after `publish(v, sd)` returns, a `WeightSource` of this sink can get version v with tensors
    equal to `sd` as it was at the call (later in-place updates of `sd` do not change version v).
    """

    def publish(self, version: int, state_dict: Mapping[str, torch.Tensor]) -> Any: ...


@runtime_checkable
class WeightSource(Protocol):
    """Where an actor (or the student learner, for D) fetches weights by version.

    Contract: `version` is the version held (-1 before the first); `poll_update` returns a newer version
    than held if one is known, else None, without waiting for a new publish; `wait_for_version(v)` returns
    once a version ≥ v is held, or raises `TransportTimeout` after `timeout_s`. Versions held never go back.
    """

    @property
    def version(self) -> int: ...

    def poll_update(self, timeout_s: float) -> Optional[WeightsUpdate]: ...

    def wait_for_version(self, min_version: int, timeout_s: float) -> WeightsUpdate: ...


@runtime_checkable
class PairSink(Protocol):
    """The replay writer: where an actor puts its pairs.

    Contract: `write(pair)` returns an id distinct from every earlier one of this sink; readers of the
    sink see the written pairs, equal to what was written, in write order. `write_many(pairs)` is
    `write` of each in order, done at once (one round trip for a remote sink): a reader sees all
    of them or none.
    """

    def write(self, pair: Pair) -> str: ...

    def write_many(self, pairs: Sequence[Pair]) -> list[str]: ...
