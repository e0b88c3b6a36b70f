"""Staleness: bounded by admission at the actors, checked again when a learner samples.

Vocabulary (STYLE.md): `policy_version` a is stamped on a pair by the actor;
`learner_version` L counts the student learner's published updates;
`staleness` = L − a; the bound is k (DESIGN.md §4; k = 0 is the synchronous limit).

Two named objects:

- `StalenessAdmission` (actors): staleness is bounded by *admitting* rollouts, not
  by discarding finished ones, so teacher clips (paid for) are never wasted.
- `StalenessFilter` (feeder/learner): the hard check at sampling time; drops and
  counts pairs beyond k (never silently), keeps a staleness histogram, and hands
  each dropped pair to `on_drop` (e.g. `RerollQueue.push`) so the cheap student
  side is rolled out again against the same teacher clip.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import redis

from afd_async.replay.pair import Pair

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local accepted = tonumber(redis.call('GET', KEYS[1]) or '0')
local running = redis.call('ZCARD', KEYS[2])
local cap = (tonumber(ARGV[1]) + tonumber(ARGV[2]) + 1) * tonumber(ARGV[3])
if cap > accepted + running then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
  return {1, accepted, running + 1, cap, now + tonumber(ARGV[5])}
end
return {0, accepted, running, cap, 0}
"""

_RELEASE = """
local live = redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] == '1' then redis.call('INCR', KEYS[1]) end
return live
"""


@dataclass(frozen=True)
class Ticket:
    """Permission to run one rollout. Release it exactly once."""

    ticket_id: str
    learner_version: int
    deadline_ms: int  # server time after which the lease lapses and the slot is freed


class StalenessAdmission:
    """Redis-atomic admission of rollouts under the staleness bound k.

    Invariant (checked atomically in one Lua script per admission):

        a rollout starts only while (k + L + 1) × batch_size > accepted + running

    where `accepted` counts pairs written to the stream and not retracted, and
    `running` counts admitted rollouts whose ticket is neither released nor
    lapsed. Since the learner consumes `batch_size` pairs per version, at most
    k + 1 batches of pairs exist ahead of it, so a rollout started at L is
    normally trained before the learner passes L + k (the `StalenessFilter`
    catches the rest). Actors also wait (`try_admit` returns None) while their
    own `policy_version` is more than k behind L.

    Tickets are leases: an actor that dies frees its slot after `lease_s`.
    Pairs dropped after acceptance (stale, dead-lettered) must be `retract`ed,
    or the count would stall the actors while the learner starves.
    """

    def __init__(self, client: redis.Redis, *, k: int, batch_size: int, prefix: str = "afd:admission", lease_s: float = 600.0) -> None:
        if k < 0 or batch_size < 1 or lease_s <= 0:
            raise ValueError(f"need k >= 0, batch_size >= 1, lease_s > 0; got k={k}, batch_size={batch_size}, lease_s={lease_s}")
        self._r = client
        self.k, self.batch_size = k, batch_size
        self.keys = [f"{prefix}:accepted", f"{prefix}:running"]
        self.lease_ms = max(1, int(lease_s * 1000))
        self._admit = client.register_script(_ADMIT)
        self._release = client.register_script(_RELEASE)

    def try_admit(self, learner_version: int, policy_version: Optional[int] = None) -> Optional[Ticket]:
        """A ticket when the bound allows one more rollout now, else None (the actor waits).

        Args:
            learner_version: the latest learner version the actor knows (an old value
                only makes admission stricter).
            policy_version: the version of the weights the actor would roll out with.
        """
        if policy_version is not None and learner_version - policy_version > self.k:
            return None
        tid = uuid.uuid4().hex
        ok, _acc, _run, _cap, deadline = self._admit(keys=self.keys, args=[self.k, learner_version, self.batch_size, tid, self.lease_ms])
        return Ticket(tid, learner_version, int(deadline)) if int(ok) else None

    def release(self, ticket: Ticket, accepted: bool) -> bool:
        """End a rollout; `accepted` when its pair was written to the stream.

        Returns False when the lease had lapsed (the slot was already freed); an
        accepted pair is counted either way, since it is in the stream.
        """
        return bool(int(self._release(keys=self.keys, args=[ticket.ticket_id, "1" if accepted else "0"])))

    def retract(self, n: int = 1) -> None:
        """Un-count `n` accepted pairs that will never train (dropped or dead-lettered)."""
        if n > 0:
            self._r.decrby(self.keys[0], n)

    def counts(self) -> tuple[int, int]:
        """`(accepted, running)` as stored now (running may include lapsed leases)."""
        pipe = self._r.pipeline(transaction=True)
        pipe.get(self.keys[0])
        pipe.zcard(self.keys[1])
        acc, run = pipe.execute()
        return int(acc or 0), int(run)

    def state_dict(self) -> dict[str, int]:
        return {"k": self.k, "batch_size": self.batch_size, "accepted": self.counts()[0]}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore `accepted` and forget running tickets (resume restarts every actor)."""
        pipe = self._r.pipeline(transaction=True)
        pipe.set(self.keys[0], int(state["accepted"]))
        pipe.delete(self.keys[1])
        pipe.execute()


def staleness_histogram(pairs: Iterable[Pair], learner_version: int) -> dict[int, int]:
    """`{staleness: count}` of `pairs` against `learner_version` (numbers only; metrics export elsewhere)."""
    return dict(sorted(Counter(learner_version - p.policy_version for p in pairs).items()))


class StalenessFilter:
    """Keeps pairs with `learner_version − policy_version ≤ k`, counts the rest.

    Invariant: `kept + dropped` equals the number of `check` calls, and every
    dropped pair is passed to `on_drop` (never discarded silently). Pairs from a
    policy newer than the learner (negative staleness, e.g. a learner that
    restarted from an older checkpoint) are kept and counted in the histogram.
    """

    def __init__(self, k: int, *, on_drop: Optional[Callable[[Pair], Any]] = None, admission: Optional[StalenessAdmission] = None) -> None:
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.k = k
        self.on_drop = on_drop
        self.admission = admission
        self.kept = 0
        self.dropped = 0
        self.histogram: Counter[int] = Counter()

    def check(self, pair: Pair, learner_version: int) -> bool:
        """True to train on `pair` now; False when it is too stale (counted, handed to `on_drop`)."""
        staleness = learner_version - pair.policy_version
        self.histogram[staleness] += 1
        if staleness <= self.k:
            self.kept += 1
            return True
        self.dropped += 1
        if self.admission is not None:
            self.admission.retract(1)
        if self.on_drop is not None:
            self.on_drop(pair)
        return False

    def filter(self, pairs: Iterable[Pair], learner_version: int) -> list[Pair]:
        return [p for p in pairs if self.check(p, learner_version)]

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "kept": self.kept, "dropped": self.dropped, "histogram": dict(self.histogram)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept, self.dropped = int(state["kept"]), int(state["dropped"])
        self.histogram = Counter({int(s): int(n) for s, n in state["histogram"].items()})
