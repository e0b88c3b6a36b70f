"""Law-specific physics errors: exact on the teacher's own clips at the student's size, large on wrong physics.

Known answers come from the renderer itself: a clip rendered with
`PhysicsOverrides` (half gravity, less restitution, more friction) and scored
against the *true* physics of its prompt must show the error it was made with.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from afd_async.eval.kinematics import fit_gravity, floor_contacts, oscillation_period, velocity_at
from afd_async.eval.physics_metrics import CAPS, position_errors, scene_physics_errors
from afd_async.eval.trajectory import robust_trajectories
from afd_async.physics import PhysicsOverrides
from afd_async.train.teacher_source import LocalTeacherSource

FPS = 8.0


def source(seconds: float = 2.0, physics: PhysicsOverrides | None = None) -> LocalTeacherSource:
    return LocalTeacherSource(render_height=96, render_width=96, render_fps=24, render_seconds=seconds, height=32,
                              width=32, fps=FPS, num_frames=int(seconds * FPS), physics=physics)


def errors(prompt: str, *, physics: PhysicsOverrides | None = None, seed: int = 0, seconds: float = 2.0,
           transform=lambda f: f) -> dict[str, float]:
    frames, _ = source(seconds, physics).clip(prompt, seed)
    _, gt = source(seconds).clip(prompt, seed)  # the truth: real physics
    tracks = robust_trajectories(np.ascontiguousarray(transform(frames)), gt.colors, FPS)
    return {**scene_physics_errors(tracks, gt), "position_error": float(position_errors(tracks, gt).mean())}


def test_kinematic_estimators_are_exact_on_noise_free_samples() -> None:
    t = np.arange(16) / FPS
    y = np.where(t < 0.6, 0.2 + 4.5 * t**2, 0.2 + 4.5 * 0.36 - 2.0 * (t - 0.6) + 4.5 * (t - 0.6) ** 2)
    assert fit_gravity(t, y, [0.0, 0.6, 2.0]) == pytest.approx(9.0, rel=1e-9)
    assert math.isnan(fit_gravity(t[:2], y[:2], [0.0, 1.0]))
    x = 0.3 + 0.8 * t - 0.4 * t**2
    assert velocity_at(t, x, 0.0, 1.0, at=0.5) == pytest.approx(0.8 - 0.8 * 0.5)
    assert oscillation_period(t, 0.5 + 0.2 * np.sin(2 * np.pi * t / 1.3)) == pytest.approx(1.3, rel=0.01)
    assert math.isnan(oscillation_period(t, np.full_like(t, 0.5)))  # no swing, no period
    rebounds, rest = floor_contacts(t, np.array([.1, .3, .6, .9, .6, .45, .5, .7, .9, .9, .9, .9, .9, .9, .9, .9]))
    assert [round(r * FPS) for r in rebounds] == [3] and rest is not None and 0.875 <= rest <= 1.0


@pytest.mark.parametrize("prompt, keys", [
    ("a red ball falls from the top and bounces twice", ("accel_error", "bounce_time_error", "restitution_error")),
    ("a bouncy green ball falls from the top right and bounces once in low gravity", ("accel_error", "restitution_error")),
    ("a cyan square falls from the top right and stops", ("accel_error", "bounce_time_error")),
    ("a blue square slides left and stops", ("stopping_distance_error",)),
    ("a yellow ball rolls right on rough ground", ("stopping_distance_error",)),
    ("a heavy red ball hits a light blue ball", ("momentum_error", "collision_velocity_error")),
    ("two balls collide head-on", ("momentum_error", "collision_velocity_error")),
    ("a long green pendulum swings", ("period_error",)),
])
def test_the_teachers_own_clip_at_the_students_size_scores_near_zero(prompt: str, keys: tuple[str, ...]) -> None:
    for seconds in (2.0, 4.0):  # also at 2x the trained length
        errs = errors(prompt, seconds=seconds)
        assert errs["position_error"] < 0.03
        for k in keys:
            limit = 0.1 if k == "bounce_time_error" else 0.06  # seconds; relative
            assert errs[k] < limit, (k, errs[k], seconds)


@pytest.mark.parametrize("prompt", [
    "a red ball falls from the top and bounces twice",
    "a blue square slides left and stops",
    "a heavy red ball hits a light blue ball",
    "a long green pendulum swings",
])
def test_frozen_and_time_reversed_clips_score_badly(prompt: str) -> None:
    good = errors(prompt)
    frozen = errors(prompt, transform=lambda f: np.repeat(f[:1], len(f), axis=0))
    reverse = errors(prompt, transform=lambda f: f[::-1])
    for bad in (frozen, reverse):
        assert bad["position_error"] > 0.1 and bad["position_error"] > 8 * good["position_error"]
    laws = [k for k in good if k != "position_error" and k != "bounce_count_error"]
    assert any(frozen[k] >= 0.5 * CAPS[k] for k in laws), frozen  # a law fails outright without motion
    assert sum(frozen[k] for k in laws) > 5 * sum(good[k] for k in laws) + 0.2


def test_half_gravity_shows_as_half_the_acceleration() -> None:
    errs = errors("a red ball falls from the top and bounces twice", physics=PhysicsOverrides(gravity_scale=0.5))
    assert errs["accel_error"] == pytest.approx(0.5, abs=0.08)


def test_less_restitution_shows_in_the_rebound_heights() -> None:
    prompt = "a bouncy green ball falls from the top right and bounces once in low gravity"
    _, gt = source().clip(prompt, 0)
    errs = errors(prompt, physics=PhysicsOverrides(restitution_scale=0.6))
    assert errs["restitution_error"] == pytest.approx(gt.restitution * 0.4, abs=0.08)


def test_triple_friction_shortens_the_slide() -> None:
    errs = errors("a yellow ball rolls right on rough ground", physics=PhysicsOverrides(friction_scale=3.0))
    assert errs["stopping_distance_error"] > 0.25


def test_quarter_gravity_doubles_the_pendulum_period() -> None:
    errs = errors("a long green pendulum swings", physics=PhysicsOverrides(gravity_scale=0.25), seconds=4.0)
    assert errs["period_error"] == pytest.approx(1.0, abs=0.15)  # sqrt(4) - 1, capped at 1


def test_wrong_masses_break_the_momentum_exchange() -> None:
    frames, _ = source().clip("a light red ball hits a heavy blue ball", 0)
    _, gt = source().clip("a heavy red ball hits a light blue ball", 0)
    tracks = robust_trajectories(frames, gt.colors, FPS)
    assert scene_physics_errors(tracks, gt)["momentum_error"] > 0.2
