"""A reward any student can reach, for checking the update rule apart from the reward (issue 15).

The oracle's true physics score did not improve the student; `Brightness` tells whether that is the update
(it would fail here too) or the physics reward being out of the student's reach (it succeeds here). Used by
`tests/integration/test_update_follows_reward.py` and `benchmarks/student_capacity.py --sanity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from afd_async.config.root import RootConfig
from afd_async.train.objectives import Objective, RewardSource, Rewards


@dataclass(frozen=True)
class Brightness(Objective):
    """The DiffusionNFT objective with `sign` x the mean brightness of each student clip as its reward.

    `channels` weighs R, G and B: (1, 0, −1) rewards red over blue, a direction with room both ways for a
    student whose clips are mostly dark background (brightness can hardly fall below it).
    Register it (`objectives.register(Brightness(...), replace=True)`) and select it with `algo.name`."""

    name: str = "brightness"
    reward: RewardSource = "custom"
    sign: float = 1.0
    channels: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def measure(self, rgb: torch.Tensor) -> torch.Tensor:
        """`(B, 3, F, H, W)` clips -> `(B,)` the channel-weighted mean (unsigned)."""
        w = torch.tensor(self.channels, dtype=torch.float32, device=rgb.device) / sum(map(abs, self.channels))
        return (rgb.float().mean(dim=(2, 3, 4)) * w).sum(dim=1)

    def make_rewards(self, cfg: RootConfig) -> Rewards:
        return lambda batch, d_score: self.sign * self.measure(batch.student_rgb)
