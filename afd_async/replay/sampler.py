"""Optional reuse sampling: a bounded in-memory buffer between the stream and a learner.

The default feed trains each pair once, in stream order (`PairReader` alone).
With `ReuseBuffer` a feeder inserts pairs read from the stream and the learner
samples batches from it, uniformly or prioritised (P(i) ∝ priority_i^α, as in
prioritised experience replay), under a `RateLimiter` that holds samples per
insert near its target, and a `StalenessFilter` checked at every sample.

Invariants:
    * At most `capacity` pairs are held; the oldest is evicted first.
    * A pair's stream id becomes acknowledgeable (`take_acks`) only once the pair
      was sampled at least once, dropped as stale, or evicted, so a feeder that
      dies before training a pair leaves it pending in the group for reclaim
      (at-least-once holds through the buffer).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Literal, Optional

import numpy as np

from afd_async.replay.pair import Pair
from afd_async.replay.rate_limiter import RateLimiter
from afd_async.replay.staleness import StalenessFilter

SamplerKind = Literal["uniform", "prioritised"]


class ReuseBuffer:
    """Bounded pair buffer with uniform or prioritised sampling.

    Args:
        capacity: max pairs held.
        rate_limiter: samples-per-insert control (None: no limit beyond availability).
        staleness: filter applied at sample time (None: no check).
        sampler: "uniform" or "prioritised".
        priority_exponent: α of prioritised sampling.
        seed: RNG seed (the RNG state is part of `state_dict`).
    """

    def __init__(self, capacity: int, *, rate_limiter: Optional[RateLimiter] = None, staleness: Optional[StalenessFilter] = None,
                 sampler: SamplerKind = "uniform", priority_exponent: float = 0.6, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if sampler not in ("uniform", "prioritised"):
            raise ValueError(f"sampler must be 'uniform' or 'prioritised', got {sampler!r}")
        self.capacity, self.sampler, self.alpha = capacity, sampler, priority_exponent
        self.rate_limiter, self.staleness = rate_limiter, staleness
        self._rng = np.random.default_rng(seed)
        self._items: OrderedDict[str, list[Any]] = OrderedDict()  # pair_id -> [stream_id, pair, priority, times_sampled]
        self._acks: list[str] = []
        self._lock = threading.Lock()
        self.evicted_unsampled = 0

    def __len__(self) -> int:
        return len(self._items)

    def insert(self, stream_id: str, pair: Pair, priority: float = 1.0, timeout_s: float = 1.0) -> bool:
        """Add a pair; waits for the rate limiter up to `timeout_s`. False when it timed out."""
        if priority < 0:
            raise ValueError(f"priority must be >= 0, got {priority}")
        if self.rate_limiter is not None and not self.rate_limiter.await_insert(1, timeout_s):
            return False
        with self._lock:
            if pair.pair_id in self._items:  # already held: the new delivery is just acknowledged
                self._acks.append(stream_id)
                return True
            self._items[pair.pair_id] = [stream_id, pair, float(priority), 0]
            while len(self._items) > self.capacity:
                _, (sid, _, _, times) = self._items.popitem(last=False)
                if times == 0:  # sampled items were handed to take_acks at their first sample
                    self.evicted_unsampled += 1
                    self._acks.append(sid)
        return True

    def sample(self, n: int, learner_version: int, timeout_s: float = 1.0) -> list[Pair]:
        """Up to `n` pairs (with replacement across calls, without within a call).

        Pairs beyond the staleness bound are removed, counted by the filter and not
        returned, so a call may return fewer than `n`. Empty when the rate limiter
        does not allow `n` samples within `timeout_s`.
        """
        if self.rate_limiter is not None and not self.rate_limiter.await_sample(n, timeout_s):
            return []
        with self._lock:
            if self.staleness is not None:
                for pid in [pid for pid, it in self._items.items() if not self.staleness.check(it[1], learner_version)]:
                    sid, _, _, times = self._items.pop(pid)
                    if times == 0:
                        self._acks.append(sid)
            if not self._items:
                return []
            keys = list(self._items)
            if self.sampler == "prioritised":
                p = np.array([self._items[k][2] for k in keys], dtype=np.float64) ** self.alpha
                p = p / p.sum() if p.sum() > 0 else None
            else:
                p = None
            idx = self._rng.choice(len(keys), size=min(n, len(keys)), replace=False, p=p)
            out = []
            for i in idx:
                item = self._items[keys[int(i)]]
                if item[3] == 0:
                    self._acks.append(item[0])
                item[3] += 1
                out.append(item[1])
            return out

    def update_priority(self, pair_id: str, priority: float) -> None:
        with self._lock:
            if pair_id in self._items:
                self._items[pair_id][2] = float(priority)

    def take_acks(self) -> list[str]:
        """Stream ids that may now be acknowledged (each returned once)."""
        with self._lock:
            out, self._acks = self._acks, []
            return out

    def state_dict(self) -> dict[str, Any]:
        """Counters, RNG and rate-limiter state. Held pairs are not saved: those not yet
        sampled are still pending in the group and come back by reclaim."""
        return {"rng": self._rng.bit_generator.state, "evicted_unsampled": self.evicted_unsampled,
                "rate_limiter": None if self.rate_limiter is None else self.rate_limiter.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self.evicted_unsampled = int(state["evicted_unsampled"])
        if self.rate_limiter is not None and state.get("rate_limiter") is not None:
            self.rate_limiter.load_state_dict(state["rate_limiter"])
