"""The `oracle` objective's reward ranks clips by their true physics, and only where a truth exists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from afd_async.config import load_config
from afd_async.eval.references import frozen_frame, reversed_frames, shuffled
from afd_async.train.oracle_reward import OracleReward, make_oracle_reward
from afd_async.train.teacher_source import LocalTeacherSource

FPS = 8.0
PROMPTS = ["a red ball falls from the top and bounces twice", "a blue square slides left and stops",
           "two balls collide head-on", "a long green pendulum swings"]


def test_teacher_clips_earn_more_than_still_or_scrambled_ones() -> None:
    src = LocalTeacherSource(render_height=96, render_width=96, render_fps=24, render_seconds=2.0, height=32, width=32,
                             fps=FPS, num_frames=16)
    teacher = src.batch(PROMPTS, [77] * len(PROMPTS))  # a jitter seed the oracle's truths (0..3) do not use
    oracle = OracleReward(fps=FPS, seconds=2.0)
    r_teacher = oracle(teacher, PROMPTS)
    assert r_teacher.shape == (len(PROMPTS),)
    assert (r_teacher > -0.3).all()
    np.testing.assert_allclose(oracle(frozen_frame(teacher), PROMPTS).numpy(), -1.0)  # no motion scores 1
    for scrambled in (shuffled(teacher, seed=0), reversed_frames(teacher)):
        assert (oracle(scrambled, PROMPTS) < r_teacher).all()
    with pytest.raises(ValueError, match="2 clips but 4 prompts"):
        oracle(teacher[:2], PROMPTS)


def test_a_teacher_without_ground_truth_is_refused_with_the_reason() -> None:
    assert make_oracle_reward(load_config([])).gt_seeds == 4
    cfg = load_config(["teacher.server.backend=diffusers", "teacher.server.diffusers_path=/nowhere"])
    with pytest.raises(ValueError, match="only the embedded renderer teacher"):
        make_oracle_reward(cfg)


def test_the_oracle_row_trains_on_true_physics_and_afd_on_d(tmp_path) -> None:
    from afd_async.train.sync_loop import SyncLoop

    base = ["experiment=smoke", "text.kind=hash", "train.eval_prompts=2"]
    oracle_cfg = load_config([*base, "algo=oracle", f"train.output_dir={tmp_path / 'o'}"])
    oracle_loop = SyncLoop(oracle_cfg)
    batch = oracle_loop.make_batch(0)
    expected = -make_oracle_reward(oracle_cfg).errors(batch.student_rgb, batch.prompts)
    np.testing.assert_allclose(oracle_loop.rewards(batch).numpy(), expected, rtol=1e-6)
    afd_loop = SyncLoop(load_config([*base, "algo=afd", f"train.output_dir={tmp_path / 'a'}"]))
    d_scores = afd_loop.d_upd.score(batch.student_rgb, batch.text, prompts=batch.prompts)
    assert torch.equal(afd_loop.rewards(batch), d_scores)
    assert SyncLoop(load_config([*base, "algo=sft", f"train.output_dir={tmp_path / 's'}"])).rewards(batch) is None


def test_the_oracle_controls_keep_its_rewards_and_lose_or_reverse_their_order() -> None:
    """`oracle_ceiling.py`'s null must hand the update the oracle's very rewards in another order (the same
    step sizes, no information), and its negated control the same rewards reversed."""
    from types import SimpleNamespace

    from afd_async.testing.rewards import ORACLE_CONTROLS

    cfg = load_config(["student.fps=8", "student.num_frames=16"])
    src = LocalTeacherSource(render_height=96, render_width=96, render_fps=24, render_seconds=2.0, height=32, width=32,
                             fps=FPS, num_frames=16)
    clips = torch.cat([src.batch(PROMPTS, [77] * len(PROMPTS)), frozen_frame(src.batch(PROMPTS, [5] * len(PROMPTS)))])
    batch = SimpleNamespace(student_rgb=clips, prompts=PROMPTS * 2)
    truth = make_oracle_reward(cfg)(clips, batch.prompts)
    assert truth.unique().numel() > 2  # distinct rewards, so a reordering shows
    permuted, negated = (c.make_rewards(cfg) for c in ORACLE_CONTROLS)
    draws = [permuted(batch, None) for _ in range(4)]
    for r in draws:
        torch.testing.assert_close(r.sort().values, truth.sort().values)
    assert any(not torch.equal(r, truth) for r in draws)
    torch.testing.assert_close(negated(batch, None), -truth)
