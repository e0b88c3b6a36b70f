"""The physics evaluator: perfect clips score ~0, frozen / reversed / blank clips score badly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from afd_async.eval import (
    MISSING_PENALTY,
    PhysicsReport,
    extract_trajectories,
    motion_magnitude,
    physics_error,
    temporal_flicker,
)
from afd_async.physics import render_prompt
from afd_async.video.clip import Clip

MOVING = [
    "a red ball falls from the top and bounces twice",
    "a blue square slides left and stops",
    "a heavy red ball hits a light blue ball",
    "a green pendulum swings",
]


def downsample(clip: Clip, size: int = 32, step: int = 3) -> Clip:
    """PIL area (box) resampling and frame decimation: 96 @ 24 fps -> 32 @ 8 fps."""
    frames = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BOX)) for f in clip.frames[::step]])
    return Clip(frames, clip.fps / step)


@pytest.mark.parametrize("prompt", MOVING + ["two balls collide head-on", "an orange ball and a yellow square collide"])
def test_the_renderers_own_clip_scores_near_zero_also_at_the_students_size(prompt: str) -> None:
    clip, gt = render_prompt(prompt, seed=11)
    native = physics_error(clip, gt)
    assert native.position_error < 0.01 and native.detection_rate == 1.0
    assert native.velocity_error < 0.25 and native.final_position_error < 0.01  # frame widths / s
    small = physics_error(downsample(clip), gt)
    assert small.position_error < 0.03 and small.detection_rate == 1.0 and small.num_frames == 16


@pytest.mark.parametrize("prompt", MOVING)
def test_frozen_reversed_and_blank_clips_score_badly(prompt: str) -> None:
    clip, gt = render_prompt(prompt, seed=2)
    good = physics_error(clip, gt).position_error
    frozen = Clip(np.repeat(clip.frames[:1], clip.num_frames, axis=0), clip.fps)
    reversed_ = Clip(np.ascontiguousarray(clip.frames[::-1]), clip.fps)
    blank = Clip(np.zeros_like(clip.frames), clip.fps)
    for bad, floor in ((frozen, 0.15), (reversed_, 0.1), (blank, MISSING_PENALTY)):
        report = physics_error(bad, gt)
        assert report.position_error >= floor and report.position_error > 10 * good
    assert physics_error(blank, gt).detection_rate == 0.0
    assert math.isnan(physics_error(blank, gt).velocity_error)
    assert physics_error(frozen, gt).motion_magnitude == 0.0


def test_robust_to_blur_dimming_and_noise_of_a_weak_student() -> None:
    clip, gt = render_prompt("a heavy red ball hits a light blue ball", seed=3)
    small = downsample(clip).frames.astype(np.float32)
    blurred = small.copy()
    blurred[:, 1:-1, 1:-1] = sum(  # 3x3 box blur
        small[:, 1 + dy : small.shape[1] - 1 + dy, 1 + dx : small.shape[2] - 1 + dx]
        for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    ) / 9.0
    rng = np.random.default_rng(0)
    noisy = blurred * 0.8 + rng.normal(0, 12, blurred.shape)  # dimmer and noisy
    weak = Clip(np.clip(noisy, 0, 255).astype(np.uint8), 8.0)
    report = physics_error(weak, gt)
    assert report.detection_rate == 1.0 and report.position_error < 0.04


@settings(max_examples=40, deadline=None)
@given(x=st.floats(0.15, 0.85), y=st.floats(0.15, 0.85), r=st.floats(2.0, 6.0))
def test_centroid_of_an_anti_aliased_disc_is_found_to_subpixel_accuracy(x: float, y: float, r: float) -> None:
    size = 32
    c = (np.arange(size) + 0.5) / size
    d = np.sqrt((c[None, :] - x) ** 2 + (c[:, None] - y) ** 2) * size
    alpha = np.clip(r - d + 0.5, 0, 1)[..., None]
    frame = (np.array([12, 12, 20]) * (1 - alpha) + np.array([50, 205, 70]) * alpha).round().astype(np.uint8)
    found = extract_trajectories(frame[None], [(50, 205, 70), (235, 50, 45)])
    assert found.shape == (2, 1, 2)
    assert np.abs(found[0, 0] - [x, y]).max() * size < 0.3
    assert np.isnan(found[1, 0]).all()  # a colour that is not there is not found


def test_motion_magnitude_and_flicker() -> None:
    clip, _ = render_prompt("a blue square slides left and stops", seed=0)
    assert motion_magnitude(clip) > 0.0005 and temporal_flicker(clip) < 0.002
    rng = np.random.default_rng(0)
    flicker = clip.frames.astype(np.int16) + np.where(np.arange(48) % 2, 40, -40)[:, None, None, None]
    flicker = Clip(np.clip(flicker, 0, 255).astype(np.uint8), 24.0)
    assert temporal_flicker(flicker) > 20 * temporal_flicker(clip) + 0.05
    noise = Clip(rng.integers(0, 256, clip.frames.shape, dtype=np.uint8), 24.0)
    assert temporal_flicker(noise) > 0.1 and motion_magnitude(noise) > 0.2
    assert motion_magnitude(Clip(clip.frames[:1], 24.0)) == 0.0


def test_report_is_a_flat_dict_for_logging() -> None:
    clip, gt = render_prompt("two balls collide head-on", seed=0)
    report = physics_error(clip, gt)
    assert isinstance(report, PhysicsReport) and len(report.per_object_error) == 2
    flat = report.as_dict()
    assert {"position_error", "detection_rate", "object_0_error", "object_1_error", "true_motion"} <= set(flat)
    assert all(isinstance(v, float) for v in flat.values())
