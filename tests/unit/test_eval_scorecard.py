"""The scorecard of a clip set: teacher clips score ~0 with motion ~1x the teacher's; frozen and reversed sets do not.

Also at twice the trained length (the long-rollout evaluation of the quality benchmark).
"""

from __future__ import annotations

import pytest
import torch

from afd_async.eval.scorecard import LAW_KEYS, score_clip, scorecard, video_to_clip
from afd_async.train.teacher_source import LocalTeacherSource

PROMPTS = [
    "a red ball falls from the top and bounces twice", "a blue square slides left and stops",
    "two balls collide head-on", "a long green pendulum swings", "a heavy red ball hits a light blue ball",
]


@pytest.fixture(params=[2.0, 4.0], ids=["1x", "2x"], scope="module")
def clips(request):
    seconds = request.param
    src = LocalTeacherSource(render_height=96, render_width=96, render_fps=24, render_seconds=seconds, height=32,
                             width=32, fps=8, num_frames=int(8 * seconds))
    truths = [[src.clip(p, s)[1] for s in range(4)] for p in PROMPTS]
    exact = src.batch(PROMPTS, [2] * len(PROMPTS))  # seed 2 is one of the truths
    reference = src.batch(PROMPTS, [50] * len(PROMPTS))
    return exact, reference, truths


def test_teacher_clips_score_near_zero_and_match_the_teachers_motion(clips) -> None:
    exact, reference, truths = clips
    metrics, curve = scorecard(exact, 8.0, truths, teacher_videos=reference)
    assert metrics["position_error"] < 0.03 and curve.shape == (exact.shape[2],)
    assert metrics["detection_rate"] == 1.0
    assert 0.85 < metrics["motion_ratio"] < 1.15 and 0.85 < metrics["speed_ratio"] < 1.15
    present = [k for k in LAW_KEYS if k in metrics and k != "bounce_count_error"]
    assert {"accel_error", "stopping_distance_error", "momentum_error", "period_error"} <= set(present)
    assert all(metrics[k] < 0.1 for k in present), {k: metrics[k] for k in present}
    assert score_clip(video_to_clip(exact[0], 8.0), truths[0]).truth_seed == 2  # the nearest truth is its own


def test_frozen_and_reversed_sets_score_badly(clips) -> None:
    exact, reference, truths = clips
    good, _ = scorecard(exact, 8.0, truths, teacher_videos=reference)
    frozen, _ = scorecard(exact[:, :, :1].expand_as(exact).contiguous(), 8.0, truths, teacher_videos=reference)
    backwards, _ = scorecard(exact.flip(2), 8.0, truths, teacher_videos=reference)
    for bad in (frozen, backwards):
        assert bad["position_error"] > 0.1 and bad["position_error"] > 5 * good["position_error"]
        assert bad["frechet"] > good["frechet"]
    assert frozen["motion_ratio"] == 0.0 and frozen["period_error"] == 1.0
    assert frozen["position_error_late"] > frozen["position_error_early"]  # a frozen clip falls further behind


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        scorecard(torch.zeros(2, 3, 16, 32, 32), 8.0, [[]])
