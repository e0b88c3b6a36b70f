"""Staleness drop-and-count: the feeder's check (`replay.staleness.StalenessFilter`).

Admission and re-rolls, the other parts of the one mechanism, are tested on a real Redis in
`test_group_claims.py` and `test_fault_injection.py`.
"""

from __future__ import annotations

import pytest

from afd_async.replay import StalenessFilter
from afd_async.replay.examples import make_pair


def test_filter_drops_and_counts_every_stale_pair() -> None:
    filt = StalenessFilter(1)
    pairs = [make_pair(i, policy_version=v) for i, v in enumerate([5, 4, 3, 2, 6])]
    kept = [p for p in pairs if filt.check(p, learner_version=5)]
    assert [p.policy_version for p in kept] == [5, 4, 6]  # a newer policy (negative staleness) is kept
    assert (filt.kept, filt.dropped) == (3, 2) and filt.kept + filt.dropped == len(pairs)
    assert dict(filt.histogram) == {0: 1, 1: 1, 2: 1, 3: 1, -1: 1}
    restored = StalenessFilter(1)
    restored.load_state_dict(filt.state_dict())
    assert restored.state_dict() == filt.state_dict()
    with pytest.raises(ValueError, match="k must be"):
        StalenessFilter(-1)
