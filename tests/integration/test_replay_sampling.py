"""Reuse / prioritised sampling with Reverb-style rate limiting, fed from the pair stream."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from afd_async.replay import PairReader, PairWriter, RateLimiter, ReuseBuffer, StalenessFilter
from afd_async.replay.examples import make_pair


def test_rate_limiter_holds_samples_per_insert() -> None:
    rl = RateLimiter(2.0, min_size_to_sample=2, error_buffer=2.0)
    assert not rl.can_sample() and rl.await_sample(1, timeout_s=0.01) is False  # below min size: learner waits
    assert rl.await_insert(1, 0.01) and rl.await_insert(1, 0.01) and rl.await_insert(1, 0.01)
    assert rl.await_insert(1, 0.01) is False  # diff would exceed max_diff: actor side waits
    assert rl.await_sample(2, 0.01) and rl.await_sample(2, 0.01)
    assert rl.await_sample(1, 0.01) is False  # would overfit the buffer
    assert rl.await_insert(1, 0.01)
    state = rl.state_dict()
    other = RateLimiter(2.0, min_size_to_sample=2, error_buffer=2.0)
    other.load_state_dict(state)
    assert other.state_dict() == state
    with pytest.raises(ValueError, match="error_buffer"):
        RateLimiter(4.0, error_buffer=1.0)


def test_rate_limiter_ratio_under_concurrency() -> None:
    rl = RateLimiter(3.0, min_size_to_sample=4, error_buffer=6.0)
    stop = threading.Event()
    bad: list[float] = []

    def inserter() -> None:
        for _ in range(200):
            while not rl.await_insert(1, 0.05):
                pass

    def sampler() -> None:
        while not stop.is_set():
            if rl.await_sample(1, 0.01) and not (rl.min_diff - 1e-9 <= rl.diff <= rl.max_diff + 1e-9):
                bad.append(rl.diff)

    ts = [threading.Thread(target=inserter), threading.Thread(target=sampler)]
    for t in ts:
        t.start()
    ts[0].join(timeout=30)
    stop.set()
    ts[1].join(timeout=30)
    assert not bad and rl.inserts == 200
    assert abs(rl.samples - 3.0 * 200) <= 3.0 * 4 + 6.0  # ratio held to within the error buffer


def test_reuse_buffer_acks_only_after_training_and_drops_stale(redis_client) -> None:
    with PairWriter(redis_client, stream="t:pairs") as w:
        for i in range(6):
            w.write(make_pair(i, payload_bytes=256, policy_version=0 if i < 2 else 3))
    rd = PairReader(redis_client, stream="t:pairs", group="student", consumer="feeder")
    buf = ReuseBuffer(4, staleness=StalenessFilter(1), rate_limiter=RateLimiter(2.0, min_size_to_sample=2, error_buffer=4.0), seed=1)
    got = rd.read(count=6)
    assert all(buf.insert(sid, p, timeout_s=0.01) for sid, p in got[:4])
    assert buf.take_acks() == []  # nothing trained yet: a crash here leaves all pending for reclaim
    batch = buf.sample(2, learner_version=3)
    assert {p.policy_version for p in batch} == {3} and len(buf) == 2  # the two v0 pairs were stale
    acks = buf.take_acks()
    assert len(acks) == 4 and rd.ack(acks) == acks
    assert buf.staleness is not None and buf.staleness.dropped == 2
    again = buf.sample(2, learner_version=3)
    assert {p.pair_id for p in again} == {p.pair_id for p in batch} and buf.take_acks() == []  # reuse
    state = buf.state_dict()
    twin = ReuseBuffer(4, rate_limiter=RateLimiter(2.0, min_size_to_sample=2, error_buffer=4.0))
    twin.load_state_dict(state)
    assert twin.state_dict()["rng"] == state["rng"]


def test_prioritised_sampling_prefers_high_priority() -> None:
    buf = ReuseBuffer(10, sampler="prioritised", priority_exponent=1.0, seed=0)
    for i in range(10):
        buf.insert(f"0-{i}", make_pair(i, payload_bytes=64), priority=1.0 if i else 50.0)
    counts = Counter(p.pair_id for _ in range(200) for p in buf.sample(1, learner_version=0))
    assert counts["pair-0"] > 100
    buf.update_priority("pair-0", 0.0)
    assert all(p.pair_id != "pair-0" for _ in range(50) for p in buf.sample(1, learner_version=0))
