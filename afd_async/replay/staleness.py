"""The feeder's staleness check: the second half of the one staleness mechanism.

Vocabulary (STYLE.md): `policy_version` a is stamped on a pair by the actor;
`learner_version` L counts the student learner's published updates;
`staleness` = L − a; the bound is k (DESIGN.md §4; k = 0 is the synchronous limit).

The mechanism has three parts, each written once:

- admission (`runtime/groups.py`, one Lua script): a training group with step g is
  handed out only while g ≤ L + k, so at most k + 1 groups are rolled out ahead;
- drop-and-count (here, used by `runtime/feeder.GroupFeed`): a finished group whose
  pairs have L − a > k when it is complete is dropped, never trained, and counted;
- re-roll of the student side only (`GroupClaims.reroll`): the dropped group is rolled
  out again; its teacher clips stay in the teacher cache (they are paid for).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from afd_async.replay.pair import Pair


class StalenessFilter:
    """Keeps pairs with `learner_version − policy_version ≤ k`, counts the rest.

    Invariant: `kept + dropped` equals the number of `check` calls (a pair is never
    dropped silently). Pairs from a policy newer than the learner (negative staleness,
    e.g. a learner that restarted from an older checkpoint) are kept and counted in
    the histogram.
    """

    def __init__(self, k: int) -> None:
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        self.k = k
        self.kept = 0
        self.dropped = 0
        self.histogram: Counter[int] = Counter()

    def check(self, pair: Pair, learner_version: int) -> bool:
        """True to train on `pair` now; False when it is too stale (counted)."""
        staleness = learner_version - pair.policy_version
        self.histogram[staleness] += 1
        if staleness <= self.k:
            self.kept += 1
            return True
        self.dropped += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "kept": self.kept, "dropped": self.dropped, "histogram": dict(self.histogram)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept, self.dropped = int(state["kept"]), int(state["dropped"])
        self.histogram = Counter({int(s): int(n) for s, n in state["histogram"].items()})
