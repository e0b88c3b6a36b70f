"""The feeder as a role: one `GroupFeed` per learner behind its `FeedServer`, the stream trimmed as acks come.

    until the run's stop key or SIGTERM: trim acked pairs, report the stream's length, beat (every second)
    then: serve acks until both learners have acked their last batches (bounded by FEEDER_DRAIN_S)
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

import torch

from afd_async import metrics as M
from afd_async.parallel.sharded_feed import ShardedFeed
from afd_async.replay.trim import trim_acked
from afd_async.runtime.context import RoleContext
from afd_async.runtime.feeder import GroupFeed
from afd_async.runtime.groups import GroupClaims
from afd_async.transport import Batch, FeedServer

FEEDER_DRAIN_S = 15.0  # longest a stopping feeder waits for its learners' last acks
LEARNERS = ("discriminator", "student")  # the consumer groups, one feed each


def make_feeds(rc: RoleContext, claims: GroupClaims, teacher: Callable[[str], torch.Tensor], *,
               warmup_groups: int, ranks: dict[str, int]) -> dict[str, GroupFeed | ShardedFeed]:
    """One feed per learner; a learner with several ranks gets its groups split by `ShardedFeed`."""
    def dropped(group: int, n: int) -> None:
        rc.metrics(M.REPLAY_DROPPED, reason="stale").inc(n)
        rc.redis.hincrby(rc.keys.status, "pairs_dropped_stale", n)

    replay = rc.cfg.replay
    feeds = {name: GroupFeed(rc.redis, rc.keys, learner=name, claims=claims, teacher=teacher,
                             staleness=replay.staleness, warmup_groups=warmup_groups,
                             dedupe_window_s=replay.dedupe_window_s, on_drop=dropped)
             for name in LEARNERS}
    return {name: ShardedFeed(feed, ranks[name]) if ranks[name] > 1 else feed for name, feed in feeds.items()}


def counted(rc: RoleContext, feed: GroupFeed | ShardedFeed) -> Callable[[int], Optional[Batch]]:
    """The feed's `next_batch`, counting the pairs it serves."""
    def next_batch(rank: int) -> Optional[Batch]:
        batch = feed.next_batch(rank)
        if batch is not None:
            rc.metrics(M.REPLAY_READ).inc(len(batch.meta["pair_ids"]))
        return batch
    return next_batch


def serve(rc: RoleContext, d_srv: FeedServer, s_srv: FeedServer) -> int:
    """Keep the stream short while the servers feed the learners; returns the exit code."""
    rc.log.info("feeder: D feed %s, student feed %s", d_srv.endpoint, s_srv.endpoint)
    rc.announce_ready()
    servers = (d_srv, s_srv)
    while not rc.stopped():
        trim_acked(rc.redis, rc.keys.pairs)
        rc.metrics(M.REPLAY_LENGTH).set(rc.redis.xlen(rc.keys.pairs))
        rc.metrics.beat()
        rc.stop.wait(1.0)
    # Learners ack their last groups after their final checkpoint: serve acks until they leave (bounded:
    # a dead learner's peer expires after the feed's heartbeat timeout).
    deadline = time.monotonic() + FEEDER_DRAIN_S
    while time.monotonic() < deadline and any(srv.stats().unacked for srv in servers):
        threading.Event().wait(0.05)
    return 0
