"""Rewards for checking the update rule apart from the reward (issue 15): one any student can reach, and the oracle's controls.

The oracle's true physics score did not improve the student; `Brightness` tells whether that is the update
(it would fail here too) or the physics reward being out of the student's reach (it succeeds here). Used by
`tests/integration/test_update_follows_reward.py` and `benchmarks/student_capacity.py --sanity`. `OracleControl`
gives the oracle's rewards shuffled or negated, the nulls of `benchmarks/oracle_ceiling.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from afd_async.config.root import RootConfig
from afd_async.train.objectives import Objective, RewardSource, Rewards
from afd_async.train.oracle_reward import make_oracle_reward


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


@dataclass(frozen=True)
class OracleControl(Objective):
    """The oracle's own rewards, shuffled across the batch or negated: the controls an update fed the true
    reward must beat.

    `permute`: the same rewards in the same amounts reach the same update, but which clip earned which is
    lost, so the policy moves about as far as the oracle's does with no information in the direction.
    (`algo.adv_clip=1e6`, the older null, keeps w at 0.5 and only pulls θ back to θ_old: it hardly moves,
    so an oracle that drifts looked worse than it, whatever its signal.) `sign=-1`: the reward reversed,
    which must end worse than the oracle if the update follows its reward. `benchmarks/oracle_ceiling.py`
    runs both beside the oracle. The shuffle is seeded by `train.seed`."""

    name: str = "oracle_permuted"
    reward: RewardSource = "custom"
    permute: bool = True
    sign: float = 1.0

    def make_rewards(self, cfg: RootConfig) -> Rewards:
        oracle = make_oracle_reward(cfg)
        g = torch.Generator().manual_seed(cfg.train.seed)

        def rewards(batch, d_score):
            r = self.sign * oracle(batch.student_rgb, batch.prompts)
            return r[torch.randperm(len(r), generator=g).to(r.device)] if self.permute else r
        return rewards


ORACLE_CONTROLS = (OracleControl(), OracleControl(name="oracle_negated", permute=False, sign=-1.0))
