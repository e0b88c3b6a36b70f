"""Robust trajectories: temporal cleaning repairs flicker gaps and one-frame jumps, never real motion."""

from __future__ import annotations

import numpy as np

from afd_async.eval.trajectory import fill_gaps, hampel, robust_trajectories
from afd_async.physics import render_prompt
from afd_async.physics.scene import BACKGROUND_RGB
from afd_async.train.teacher_source import LocalTeacherSource


def student_clip(prompt: str, seed: int = 0) -> tuple[np.ndarray, object]:
    src = LocalTeacherSource(render_height=96, render_width=96, render_fps=24, render_seconds=2, height=32,
                             width=32, fps=8, num_frames=16)
    return src.clip(prompt, seed)


def test_hampel_replaces_an_isolated_jump_and_keeps_fast_motion_and_a_bounce() -> None:
    jump = np.array([0.5, 0.5, 0.5, 0.95, 0.5, 0.5, 0.5])
    assert np.allclose(hampel(jump), 0.5)
    ramp = np.linspace(0.1, 0.9, 9)  # 0.1 of the frame per frame, like a fast slide
    assert np.allclose(hampel(ramp), ramp)
    bounce = np.array([0.16, 0.23, 0.44, 0.79, 0.62, 0.54, 0.61, 0.81, 0.71])  # a teacher's bouncing y
    assert np.allclose(hampel(bounce), bounce)


def test_fill_gaps_interpolates_short_runs_only() -> None:
    x = np.array([0.0, np.nan, 0.2, 0.3, np.nan, np.nan, np.nan, 0.7])
    out = fill_gaps(x, max_gap=2)
    assert np.isclose(out[1], 0.1)
    assert np.isnan(out[4:7]).all()  # three missed frames stay missing
    assert np.allclose(fill_gaps(np.array([np.nan, 0.4, 0.5])), [0.4, 0.4, 0.5])


def test_robust_tracks_survive_a_faded_frame_and_a_spurious_blob() -> None:
    frames, gt = student_clip("a red ball falls from the top and bounces twice")
    clean = robust_trajectories(frames, gt.colors, 8.0)
    bad = frames.copy()
    bad[5] = np.asarray(BACKGROUND_RGB, np.uint8)  # the object flickers out for one frame
    bad[9, :, :] = np.asarray(BACKGROUND_RGB, np.uint8)
    bad[9, 1:5, 1:5] = gt.objects[0].rgb  # ... and is drawn in the wrong corner in another
    raw = robust_trajectories(bad, gt.colors, 8.0).raw
    fixed = robust_trajectories(bad, gt.colors, 8.0).positions
    truth = gt.positions_at(clean.times)[0]
    assert np.isnan(raw[0, 5, 0]) and np.linalg.norm(raw[0, 9] - truth[9]) > 0.3
    assert np.linalg.norm(fixed[0, 5] - truth[5]) < 0.1
    assert np.linalg.norm(fixed[0, 9] - truth[9]) < 0.15
    assert np.abs(clean.positions[0] - truth).max() < 0.03


def test_speed_of_a_frozen_clip_is_zero_and_of_a_moving_one_matches_truth() -> None:
    clip, gt = render_prompt("a blue square slides left", seed=3, height=32, width=32, fps=8)
    tracks = robust_trajectories(clip.frames, gt.colors, 8.0)
    truth = np.linalg.norm(np.diff(gt.positions_at(tracks.times)[0], axis=0), axis=-1).mean() * 8.0
    assert abs(tracks.speed()[0] - truth) < 0.05 * truth
    frozen = robust_trajectories(np.repeat(clip.frames[:1], 16, axis=0), gt.colors, 8.0)
    assert frozen.speed()[0] == 0.0
