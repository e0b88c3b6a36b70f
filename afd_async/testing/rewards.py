"""A reward any student can reach, for checking the update rule apart from the reward (issue 15).

The oracle's true physics score did not improve the student; `Brightness` tells whether that is the update
(it would fail here too) or the physics reward being out of the student's reach (it succeeds here). Used by
`tests/integration/test_update_follows_reward.py` and `benchmarks/student_capacity.py --sanity`.
"""

from __future__ import annotations

from dataclasses import dataclass

from afd_async.config.root import RootConfig
from afd_async.train.objectives import Objective, RewardSource, Rewards


@dataclass(frozen=True)
class Brightness(Objective):
    """The DiffusionNFT objective with `sign` x the mean brightness of each student clip as its reward.

    Register it (`objectives.register(Brightness(...), replace=True)`) and select it with `algo.name`."""

    name: str = "brightness"
    reward: RewardSource = "custom"
    sign: float = 1.0

    def make_rewards(self, cfg: RootConfig) -> Rewards:
        return lambda batch, d_score: self.sign * batch.student_rgb.float().mean(dim=(1, 2, 3, 4))
