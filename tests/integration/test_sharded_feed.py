"""Data-parallel feed over real ZeroMQ: each learner rank gets its block of the same group, acks join."""

from __future__ import annotations

import itertools
import threading
from typing import Any, Optional

import pytest
import torch

from afd_async.launch.supervisor import wait_until
from afd_async.parallel.dist import DistributedConfigError
from afd_async.parallel.sharded_feed import ShardedFeed, shard_batch
from afd_async.transport import Batch, FeedClient, FeedServer


class Groups:
    """Whole-group source (the `GroupFeed` hooks): group g has rows g·100 + i, token g."""

    def __init__(self, batch: int = 4, limit: int = 50) -> None:
        self.batch, self.limit = batch, limit
        self._next = itertools.count()
        self.acked: list[int] = []
        self.lost: list[Any] = []
        self._lock = threading.Lock()

    def next_batch(self, rank: int) -> Optional[Batch]:
        with self._lock:
            g = next(self._next)
        if g >= self.limit:
            return None
        rows = torch.arange(self.batch) + 100 * g
        meta = {"group": g, "pair_ids": [f"p{g}-{i}" for i in range(self.batch)], "phase": "train"}
        return Batch({"x": rows.float()[:, None].repeat(1, 3), "ids": rows}, meta, token=g)

    def on_ack(self, rank: int, token: Any) -> None:
        with self._lock:
            self.acked.append(token)

    def on_lost(self, rank: int, tokens: list[Any]) -> None:
        self.lost.extend(tokens)


def _serve(feed: ShardedFeed) -> FeedServer:
    return FeedServer("tcp://127.0.0.1:0", feed.next_batch, on_ack=feed.on_ack, on_lost=feed.on_lost,
                      peer_timeout_s=2.0)


def test_shard_batch_slices_rows_and_row_meta_only() -> None:
    b = Groups(batch=6).next_batch(0)
    block = shard_batch(b, 1, 3)
    assert block.tensors["ids"].tolist() == [2, 3]
    assert block.meta["pair_ids"] == ["p0-2", "p0-3"]
    assert block.meta["group"] == 0 and block.meta["shard"] == [1, 3, 6]
    with pytest.raises(DistributedConfigError, match="multiple of 4"):
        shard_batch(b, 0, 4)


def test_each_rank_trains_its_block_of_the_same_groups_and_a_group_is_acked_once_after_all_ranks() -> None:
    source = Groups(batch=4, limit=6)
    feed = ShardedFeed(source, world_size=2)
    with _serve(feed) as server:
        with FeedClient(server.endpoint, rank=0, window=2) as r0, FeedClient(server.endpoint, rank=1, window=2) as r1:
            got0 = [r0.next(timeout_s=10) for _ in range(3)]
            got1 = [r1.next(timeout_s=10) for _ in range(3)]
            assert [b.meta["group"] for b in got0] == [b.meta["group"] for b in got1] == [0, 1, 2]
            for g, (a, b) in enumerate(zip(got0, got1)):
                assert a.tensors["ids"].tolist() == [100 * g, 100 * g + 1]
                assert b.tensors["ids"].tolist() == [100 * g + 2, 100 * g + 3]
            for b in got0:
                r0.ack(b)
            wait_until(lambda: feed.pending_groups() >= 3, timeout_s=5)
            assert source.acked == []  # rank 1 still owes its blocks: nothing is acked in Redis yet
            for b in got1:
                r1.ack(b)
            wait_until(lambda: len(source.acked) == 3, timeout_s=5)
    assert sorted(source.acked) == [0, 1, 2]


def test_a_rank_that_leaves_unacked_gets_its_blocks_again_in_order_and_nothing_is_acked_twice() -> None:
    source = Groups(batch=4, limit=6)
    feed = ShardedFeed(source, world_size=2)
    with _serve(feed) as server:
        with FeedClient(server.endpoint, rank=0, window=2) as r0:
            r1 = FeedClient(server.endpoint, rank=1, window=2).__enter__()
            seen1 = [r1.next(timeout_s=10) for _ in range(2)]
            r1.ack(seen1[0])  # group 0 done on rank 1; group 1 is in flight when rank 1 dies
            for b in [r0.next(timeout_s=10) for _ in range(2)]:
                r0.ack(b)
            wait_until(lambda: source.acked == [0], timeout_s=5)
            r1.close()  # leaves holding group 1's block (and whatever it prefetched)
            with FeedClient(server.endpoint, rank=1, window=2) as again:
                redo = again.next(timeout_s=10)
                assert redo.meta["group"] == 1
                assert redo.tensors["ids"].tolist() == [102, 103]
                again.ack(redo)
                wait_until(lambda: sorted(source.acked) == [0, 1], timeout_s=5)
                nxt = again.next(timeout_s=10)
                assert nxt.meta["group"] == 2  # the order of the rank's queue is kept
    assert sorted(source.acked)[:2] == [0, 1] and len(source.acked) == len(set(source.acked))


def test_blocks_handed_back_in_several_calls_are_served_in_group_order() -> None:
    """A rank's blocks can come back in pieces (the drop, then one collated for it as it left):
    whatever the order of the calls, its queue is served in group order."""
    feed = ShardedFeed(Groups(batch=4, limit=6), world_size=2)
    b0, b1, b2 = (feed.next_batch(1) for _ in range(3))
    feed.on_lost(1, [b0.token, b1.token])
    feed.on_lost(1, [b2.token])
    assert [feed.next_batch(1).meta["group"] for _ in range(4)] == [0, 1, 2, 3]


class _SlowHandBack(ShardedFeed):
    """`on_lost` waits (up to 3 s) for `next_batch` of the same rank: a hand-back that runs late."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.asked, self.losing = threading.Event(), threading.Event()

    def next_batch(self, rank: int) -> Optional[Batch]:
        if self.losing.is_set():
            self.asked.set()
        return super().next_batch(rank)

    def on_lost(self, rank: int, tokens: list[Any]) -> None:
        self.losing.set()
        self.asked.wait(3.0)
        super().on_lost(rank, tokens)


def test_a_replaced_rank_is_served_only_after_its_predecessors_blocks_are_back() -> None:
    """A new connection of rank 1 replaces one that never said bye: its hello and credit arrive together,
    the old connection's blocks are handed back on the I/O thread. The server must not ask the feed for
    the new connection's batch before that hand-back returned, or the rank gets a new group first."""
    import zmq

    from afd_async.transport.feed_wire import control

    feed = _SlowHandBack(Groups(batch=4, limit=8), world_size=2)
    with _serve(feed) as server:
        ctx = zmq.Context()
        old = ctx.socket(zmq.DEALER)  # a rank-1 learner that takes a block, then goes silent (no bye)
        try:
            old.connect(server.endpoint)
            old.send(control("hello", rank=1))
            old.send(control("credit", n=1))
            while len(old.recv_multipart()) < 2:  # welcome, then the batch's frames
                pass
            with FeedClient(server.endpoint, rank=1, window=2) as again:
                redo = again.next(timeout_s=10)
                assert redo.meta["group"] == 0
        finally:
            old.close(0)
            ctx.term()
