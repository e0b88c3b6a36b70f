"""The whole student update (rollout → advantage → DiffusionNFT step → θ_old) follows the sign of its reward.

Issue 15: with the true physics score as the reward (the `oracle` row) the student's physics does not improve.
This separates "the update is wrong" from "the reward is out of the student's reach": the same sync loop, with
a reward the tiny student can reach (the mean of its clip's red minus blue, registered as a custom objective the
way a user would), must make the fixed eval rollouts redder when the reward is +(R − B) and bluer when it is
−(R − B), starting from the same weights and noise. (Not plain brightness: the shipped student's clips are mostly
dark background, which leaves them little room to get darker.) `benchmarks/student_capacity.py --sanity` measures the
same against a no-signal twin.
"""

from __future__ import annotations

import pytest

from afd_async.config import load_config
from afd_async.testing.rewards import Brightness
from afd_async.train.objectives import register, unregister
from afd_async.train.sync_loop import SyncLoop

pytestmark = pytest.mark.slow

STEPS = 12


def warmth_after(sign: float, tmp_path) -> tuple[float, float]:
    reward = Brightness(name="test_brightness", sign=sign, channels=(1.0, 0.0, -1.0))
    register(reward, replace=True)
    try:
        cfg = load_config(["experiment=quality_cpu", "algo.name=test_brightness", "train.eval_every=0",
                           "algo.d_warmup_steps=1", "algo.rollouts_per_prompt=2", "algo.lr_student=3e-5",
                           f"train.steps={STEPS}", f"train.output_dir={tmp_path / str(sign)}"])
        loop = SyncLoop(cfg)
        loop.warmup_d()
        start = reward.measure(loop.make_batch(10_000, "eval").student_rgb).mean().item()
        for _ in range(STEPS):
            loop.step()
        return start, reward.measure(loop.make_batch(10_000, "eval").student_rgb).mean().item()
    finally:
        unregister("test_brightness")


def test_nft_update_moves_rollouts_in_the_direction_of_the_reward(tmp_path):
    start_up, up = warmth_after(+1.0, tmp_path)
    start_down, down = warmth_after(-1.0, tmp_path)
    assert start_up == start_down  # same weights, same prompts, same noise: only the reward's sign differs
    assert up > start_up > down, (start_up, up, down)
    # the effect is the reward's, not the update's drift: each side moved by a clear margin
    assert up - start_up > 0.005 and start_up - down > 0.005, (start_up, up, down)
