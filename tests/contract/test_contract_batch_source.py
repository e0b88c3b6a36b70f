"""`BatchSource` contract (`afd_async/seams.py`): the ZeroMQ feed (FeedServer → FeedClient) and `LocalFeed`."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from afd_async.seams import BatchSource
from afd_async.transport import Batch, FeedClient, FeedEnded, FeedServer, TransportTimeout
from afd_async.transport.local import LocalFeed
from afd_async.testing.waiting import wait_until


@dataclass
class Feed:
    """A source and its producer's side: `offer` a batch, `end` the stream, the tokens acked and lost."""

    source: BatchSource
    offer: Callable[[Batch], None]
    end: Callable[[], None]
    close: Callable[[], None]
    acked: list[Any]
    lost: list[Any]


@pytest.fixture()
def zmq_feed() -> Iterator[Feed]:
    queue: collections.deque[Batch] = collections.deque()
    ended = threading.Event()
    acked: list[Any] = []
    lost: list[Any] = []

    def next_batch(rank: int) -> Batch | None:
        if queue:
            return queue.popleft()
        if ended.is_set():
            raise StopIteration
        return None

    with FeedServer("tcp://127.0.0.1:0", next_batch, on_ack=lambda rank, token: acked.append(token),
                    on_lost=lambda rank, tokens: lost.extend(tokens), peer_timeout_s=1.0, idle_s=0.005) as server, \
            FeedClient(server.endpoint, rank=0, window=1) as client:
        yield Feed(client, queue.append, ended.set, client.close, acked, lost)


@pytest.fixture()
def local_feed() -> Iterator[Feed]:
    acked: list[Any] = []
    lost: list[Any] = []
    feed = LocalFeed(on_ack=acked.append, on_lost=lost.extend)
    yield Feed(feed, feed.offer, feed.end, feed.close, acked, lost)
    feed.close()


@pytest.fixture(params=["zmq", "local"])
def feed(request: pytest.FixtureRequest) -> Feed:
    return request.getfixturevalue(f"{request.param}_feed")


def _batch(i: int) -> Batch:
    return Batch({"x": torch.full((2, 3), float(i)), "u8": torch.arange(6, dtype=torch.uint8).reshape(2, 3) + i},
                 {"group": i, "pair_ids": [f"p{i}"]}, token=f"t{i}")


def test_is_a_batch_source(feed: Feed) -> None:
    assert isinstance(feed.source, BatchSource)


def test_batches_arrive_in_order_intact_with_distinct_seqs(feed: Feed) -> None:
    for i in range(3):
        feed.offer(_batch(i))
    got = [feed.source.next(timeout_s=10) for _ in range(3)]
    assert [b.meta["group"] for b in got] == [0, 1, 2]
    assert len({b.seq for b in got}) == 3
    for i, b in enumerate(got):
        assert torch.equal(b.tensors["x"], torch.full((2, 3), float(i)))
        assert b.tensors["u8"].dtype == torch.uint8 and torch.equal(b.tensors["u8"], torch.arange(6, dtype=torch.uint8).reshape(2, 3) + i)
        assert b.meta["pair_ids"] == [f"p{i}"]
        feed.source.ack(b)


def test_no_batch_is_a_timeout(feed: Feed) -> None:
    with pytest.raises(TransportTimeout):
        feed.source.next(timeout_s=0.2)


def test_an_ack_returns_the_token_to_the_producer(feed: Feed) -> None:
    feed.offer(_batch(7))
    b = feed.source.next(timeout_s=10)
    feed.source.ack(b)
    wait_until(lambda: feed.acked == ["t7"])


def test_the_end_of_the_stream_is_feed_ended_after_the_last_batch(feed: Feed) -> None:
    feed.offer(_batch(0))
    feed.end()
    assert feed.source.next(timeout_s=10).meta["group"] == 0
    with pytest.raises(FeedEnded):
        feed.source.next(timeout_s=10)


def test_an_unacked_batch_goes_back_on_close(feed: Feed) -> None:
    feed.offer(_batch(0))
    feed.offer(_batch(1))
    first = feed.source.next(timeout_s=10)
    feed.source.ack(first)
    feed.source.next(timeout_s=10)  # taken, never acked
    wait_until(lambda: feed.acked == ["t0"])
    feed.close()
    wait_until(lambda: "t1" in feed.lost)
    assert "t0" not in feed.lost
