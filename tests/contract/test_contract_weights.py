"""`WeightSink` / `WeightSource` contract (`afd_async/seams.py`): ZeroMQ (WeightPublisher → WeightSubscriber)
and `LocalWeights`. A learner publishes by version; an actor gets a version at least as new as it needs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch

from afd_async.seams import WeightSink, WeightSource
from afd_async.transport import TransportTimeout, WeightPublisher, WeightSubscriber
from afd_async.transport.local import LocalWeights
from afd_async.testing.waiting import wait_until

LOCAL = "tcp://127.0.0.1:0"


@dataclass
class Channel:
    sink: WeightSink
    source: WeightSource


@pytest.fixture()
def zmq_channel() -> Iterator[Channel]:
    with WeightPublisher(LOCAL, LOCAL) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, query_interval_s=0.05) as sub:
        yield Channel(pub, sub)


@pytest.fixture()
def local_channel() -> Iterator[Channel]:
    board = LocalWeights()
    with board, board.source() as source:
        yield Channel(board, source)


@pytest.fixture(params=["zmq", "local"])
def channel(request: pytest.FixtureRequest) -> Channel:
    return request.getfixturevalue(f"{request.param}_channel")


def _weights(v: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((4, 3), v), "b": torch.arange(3, dtype=torch.float32) + v}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_are_a_sink_and_a_source(channel: Channel) -> None:
    assert isinstance(channel.sink, WeightSink) and isinstance(channel.source, WeightSource)


def test_nothing_published_is_version_minus_one_and_a_wait_times_out(channel: Channel) -> None:
    assert channel.source.version == -1
    assert channel.source.poll_update(timeout_s=1.0) is None
    with pytest.raises(TransportTimeout):
        channel.source.wait_for_version(0, timeout_s=0.3)


def test_a_published_version_arrives_with_its_tensors(channel: Channel) -> None:
    channel.sink.publish(1, _weights(1.0))
    got = channel.source.wait_for_version(1, timeout_s=10)
    assert got.version == 1 and channel.source.version == 1
    assert _equal(dict(got.state_dict), _weights(1.0))


def test_a_version_is_what_was_published_not_what_the_learner_did_next(channel: Channel) -> None:
    sd = _weights(2.0)
    channel.sink.publish(2, sd)
    with torch.no_grad():
        sd["w"].add_(100.0)  # the learner's next in-place step
    assert _equal(dict(channel.source.wait_for_version(2, timeout_s=10).state_dict), _weights(2.0))


def test_the_newest_version_wins_and_versions_never_go_back(channel: Channel) -> None:
    for v in (1, 2, 3):
        channel.sink.publish(v, _weights(float(v)))
    got = channel.source.wait_for_version(3, timeout_s=10)
    assert got.version == 3 and _equal(dict(got.state_dict), _weights(3.0))
    assert channel.source.poll_update(timeout_s=1.0) is None  # nothing newer than what is held
    with pytest.raises(TransportTimeout):
        channel.source.wait_for_version(4, timeout_s=0.3)
    assert channel.source.version == 3


def test_a_wait_for_an_older_version_returns_the_one_held(channel: Channel) -> None:
    channel.sink.publish(5, _weights(5.0))
    channel.source.wait_for_version(5, timeout_s=10)
    assert channel.source.wait_for_version(2, timeout_s=0.3).version == 5


def test_poll_update_picks_up_a_newer_version_without_a_wait(channel: Channel) -> None:
    channel.sink.publish(1, _weights(1.0))
    channel.source.wait_for_version(1, timeout_s=10)
    channel.sink.publish(2, _weights(2.0))
    updates = []

    def seen() -> bool:  # announcements travel asynchronously: poll until one is seen (bounded)
        update = channel.source.poll_update(timeout_s=1.0)
        updates.extend([update] if update is not None else [])
        return bool(updates)

    wait_until(seen)
    assert updates[0].version == 2 and channel.source.version == 2
