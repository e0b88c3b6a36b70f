"""FVD-style distance: a fixed network (same features on every machine) and a correct Fréchet distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from afd_async.eval.frechet import RandomVideoFeatures, frechet_distance, video_frechet_distance
from afd_async.train.teacher_source import LocalTeacherSource

PROMPTS = [
    "a red ball falls from the top and bounces twice", "a blue square slides left and stops",
    "two balls collide head-on", "a green pendulum swings", "a yellow ball rolls right on rough ground",
    "a heavy red ball hits a light blue ball",
]


def test_frechet_distance_of_gaussians_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shift = np.array([1.0, -2.0, 0.5])
    assert frechet_distance(a, a + shift) == pytest.approx(float((shift**2).sum()), rel=1e-9)
    # N(0, I) vs N(0, 4I) in 3-D: 3 * (1 + 4 - 2 * 2) = 3
    assert frechet_distance(a, 2.0 * rng.standard_normal((4000, 3))) == pytest.approx(3.0, rel=0.1)
    with pytest.raises(ValueError):
        frechet_distance(a[:1], a)


def test_the_feature_network_is_fixed_by_its_seed() -> None:
    x = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    a, b = RandomVideoFeatures(), RandomVideoFeatures()
    assert torch.equal(a(x), b(x)) and a(x).shape == (2, a.dim)
    assert not torch.equal(a(x), RandomVideoFeatures(seed=1)(x))
    assert all(not p.requires_grad for p in a.parameters())


def test_teacher_sets_are_close_and_frozen_or_noisy_sets_are_far() -> None:
    src = LocalTeacherSource(render_height=96, render_width=96, render_fps=24, render_seconds=2, height=32,
                             width=32, fps=8, num_frames=16)
    prompts = PROMPTS * 2
    t1 = src.batch(prompts, list(range(len(prompts))))
    t2 = src.batch(prompts, list(range(100, 100 + len(prompts))))
    frozen = t2[:, :, :1].expand_as(t2).contiguous()
    noisy = (t2 + 0.3 * torch.randn(t2.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    net = RandomVideoFeatures()
    floor = video_frechet_distance(t1, t2, net=net)
    assert video_frechet_distance(t1, frozen, net=net) > 2 * floor
    assert video_frechet_distance(t1, noisy, net=net) > 10 * floor
