"""One learner batch split over the ranks of a data-parallel learner.

A `GroupFeed` hands out whole groups (one learner batch each). Under DDP every
rank must train the *same* group at the same step, each on its own rows, or
the averaged gradient is not the single-process gradient. `ShardedFeed` sits
between the group feed and the `FeedServer`:

    rank r asks → its queue is empty → pull the next group, cut it into
    world_size contiguous row blocks, queue block i on rank i → send block r

Invariants: a group's Redis ids are acked once, only after *every* rank acked
its block (a crash of any rank before that redelivers the group's blocks to
the same ranks, in their original order); no rank ever sees another rank's
rows; queues are FIFO per rank, so rank-local order equals group order.
"""

from __future__ import annotations

import collections
import itertools
import threading
from typing import Any, Optional, Protocol

from afd_async.parallel.dist import shard_slice
from afd_async.transport import Batch


class GroupSource(Protocol):
    """The FeedServer hooks of a whole-group feed (`runtime.feeder.GroupFeed`)."""

    def next_batch(self, rank: int) -> Optional[Batch]: ...
    def on_ack(self, rank: int, token: Any) -> None: ...
    def on_lost(self, rank: int, tokens: list[Any]) -> None: ...


def shard_batch(batch: Batch, rank: int, world_size: int) -> Batch:
    """Rank `rank`'s block of a collated group: tensors sliced on dim 0, per-row meta lists sliced alike.

    The meta gains `shard = [rank, world_size, global_batch]` so the learner can
    place its rows in the global batch (noise and advantage normalisation are
    computed on the global batch and sliced).
    """
    sizes = {int(t.shape[0]) for t in batch.tensors.values()}
    if len(sizes) != 1:
        raise ValueError(f"batch tensors disagree on the batch size: {sorted(sizes)}")
    (b,) = sizes
    rows = shard_slice(b, rank, world_size)
    meta = {k: (v[rows] if isinstance(v, list) and len(v) == b else v) for k, v in batch.meta.items()}
    meta["shard"] = [rank, world_size, b]
    return Batch({k: t[rows] for k, t in batch.tensors.items()}, meta, None)


class ShardedFeed:
    """FeedServer hooks that deal each group's rows out to `world_size` learner ranks (see module doc)."""

    def __init__(self, source: GroupSource, world_size: int) -> None:
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        self.source, self.world_size = source, world_size
        self._queues: dict[int, collections.deque[Batch]] = {r: collections.deque() for r in range(world_size)}
        self._waiting: dict[int, tuple[Any, set[int]]] = {}  # group key → (source token, ranks not yet acked)
        self._keys = itertools.count()
        self._lock = threading.Lock()

    def next_batch(self, rank: int) -> Optional[Batch]:
        self._check_rank(rank)
        with self._lock:
            if not self._queues[rank]:
                group = self.source.next_batch(0)
                if group is None:
                    return None
                key = next(self._keys)
                self._waiting[key] = (group.token, set(range(self.world_size)))
                for r in range(self.world_size):
                    block = shard_batch(group, r, self.world_size)
                    self._queues[r].append(Batch(block.tensors, block.meta, {"key": key, "block": block}))
            return self._queues[rank].popleft()

    def on_ack(self, rank: int, token: Any) -> None:
        with self._lock:
            source_token, left = self._waiting[token["key"]]
            left.discard(rank)
            done = not left
            if done:
                del self._waiting[token["key"]]
        if done:
            self.source.on_ack(0, source_token)

    def on_lost(self, rank: int, tokens: list[Any]) -> None:
        """A rank left without acking: its blocks go back into its queue, in group order, for its replacement.

        Sorted by group key rather than pushed to the front, so the queue stays in group order even
        when a rank's blocks come back in several calls (handed back at the drop, then one that was
        being collated for it when it left)."""
        with self._lock:
            back = [Batch(t["block"].tensors, t["block"].meta, t) for t in tokens]
            self._queues[rank] = collections.deque(sorted([*self._queues[rank], *back], key=lambda b: b.token["key"]))

    def pending_groups(self) -> int:
        """Groups handed out whose Redis ids are not acked yet (some rank still owes an ack)."""
        with self._lock:
            return len(self._waiting)

    def _check_rank(self, rank: int) -> None:
        if not 0 <= rank < self.world_size:
            raise ValueError(f"feed rank {rank} is outside a learner world of {self.world_size}")
