"""Reference clips and the primary physics score: clips without motion (or with scrambled motion) never beat the teacher.

Known answers come from the renderer: a clip with no motion scores exactly 1,
whatever it shows; the teacher's own clip (an unseen jitter seed) ~0.05; a
clip rendered with slower launches scores in between; scrambled time, above 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from afd_async.eval.kinematic_score import NO_MOTION, kinematic_score, relative_error
from afd_async.eval.references import REFERENCE_NAMES, frozen_frame, references, reversed_frames, shuffled, static_clip
from afd_async.eval.scorecard import KINEMATIC_KEYS, score_clips, scorecard, video_to_clip
from afd_async.eval.trajectory import robust_trajectories
from afd_async.physics import PhysicsOverrides
from afd_async.train.teacher_source import LocalTeacherSource

FPS = 8.0
PROMPTS = [
    "a red ball falls from the top and bounces twice", "a blue square slides left and stops",
    "two balls collide head-on", "a long green pendulum swings", "a heavy red ball hits a light blue ball",
]


def source(seconds: float, physics: PhysicsOverrides | None = None) -> LocalTeacherSource:
    return LocalTeacherSource(render_height=96, render_width=96, render_fps=24, render_seconds=seconds, height=32,
                              width=32, fps=FPS, num_frames=int(FPS * seconds), physics=physics)


@pytest.fixture(params=[2.0, 4.0], ids=["1x", "2x"], scope="module")
def horizon(request):
    src = source(request.param)
    truths = [[src.clip(p, s)[1] for s in range(4)] for p in PROMPTS]
    teacher = src.batch(PROMPTS, [50] * len(PROMPTS))  # an unseen jitter seed, as the benchmark's teacher row
    return request.param, truths, teacher


def physics_scores(videos: torch.Tensor, truths) -> np.ndarray:
    return np.array([s.physics_score for s in score_clips(videos, FPS, truths)])


def test_relative_error_is_one_without_motion_and_two_for_opposite_motion() -> None:
    truth = np.array([[[1.0, 0.0], [0.0, 2.0]]])
    assert relative_error(np.zeros_like(truth), truth) == NO_MOTION
    assert relative_error(truth, truth) == 0.0
    assert relative_error(-truth, truth) == 2.0
    assert relative_error(-3 * truth, truth) == 2.0  # capped
    assert np.isnan(relative_error(truth, np.zeros_like(truth)))


def test_builders_keep_the_pictures_and_change_only_time(horizon) -> None:
    _, truths, teacher = horizon
    f = teacher.shape[2]
    assert torch.equal(frozen_frame(teacher), teacher[:, :, :1].expand_as(teacher))
    assert torch.equal(reversed_frames(teacher), teacher[:, :, torch.arange(f - 1, -1, -1)])
    mixed = shuffled(teacher, seed=3)
    assert torch.equal(mixed, shuffled(teacher, seed=3)) and not torch.equal(mixed, shuffled(teacher, seed=4))
    for clip, orig in zip(mixed, teacher):
        assert not torch.equal(clip, orig)  # never the identity
        key = lambda v: sorted(tuple(v[:, i].flatten().tolist()) for i in range(f))  # noqa: E731
        assert key(clip) == key(orig)  # the same frames, reordered
    with pytest.raises(ValueError):
        shuffled(teacher[:, :, :1])
    refs = references(teacher, truths, fps=FPS)
    assert set(refs) == set(REFERENCE_NAMES) and all(r.shape == teacher.shape for r in refs.values())


def test_static_draws_each_object_still_at_its_true_first_position(horizon) -> None:
    _, truths, teacher = horizon
    for gt in (t[0] for t in truths):
        clip = static_clip(gt, num_frames=teacher.shape[2], fps=FPS, height=32, width=32)
        assert clip.shape == teacher.shape[1:] and torch.equal(clip, clip[:, :1].expand_as(clip))
        tracks = robust_trajectories(video_to_clip(clip, FPS).frames, gt.colors, FPS)
        assert tracks.found.all()
        np.testing.assert_allclose(tracks.positions[:, 0], gt.positions[:, 0], atol=0.03)


def test_primary_score_ranks_the_teacher_below_every_reference(horizon) -> None:
    _, truths, teacher = horizon
    t = physics_scores(teacher, truths)
    refs = {name: physics_scores(v, truths) for name, v in references(teacher, truths, fps=FPS).items()}
    assert t.mean() < 0.1 and t.max() < 0.2, t
    for name in ("static", "frozen_frame"):  # no motion: exactly 1 against any truth
        np.testing.assert_allclose(refs[name], NO_MOTION, atol=1e-12)
    for name in ("shuffled", "reversed"):
        assert refs[name].mean() > 1.2, (name, refs[name])
        assert (refs[name] > t).all(), (name, refs[name], t)


def test_slower_launches_score_between_the_teacher_and_no_motion(horizon) -> None:
    seconds, truths, teacher = horizon
    moving = slice(1, None)  # the launched scenes (a drop from rest has no launch speed)
    slow = source(seconds, PhysicsOverrides(speed_scale=0.6)).batch(PROMPTS, [50] * len(PROMPTS))
    s = physics_scores(slow[moving], truths[moving])
    t = physics_scores(teacher[moving], truths[moving])
    assert (s > t + 0.2).all() and (s < NO_MOTION).all(), (s, t)


def test_losing_objects_is_never_better_than_showing_them_still(horizon) -> None:
    _, truths, teacher = horizon
    f = teacher.shape[2]
    blank = teacher[:, :, :, :2, :2].mean(dim=(3, 4), keepdim=True).expand_as(teacher).contiguous()  # backdrop only
    np.testing.assert_allclose(physics_scores(blank, truths), NO_MOTION, atol=1e-12)
    half = teacher.clone()
    half[:, :, f // 2 :] = blank[:, :, f // 2 :]  # objects vanish half way
    scores = score_clips(half, FPS, truths)
    lost = np.array([s.physics_score for s in scores])
    assert (lost <= NO_MOTION).all() and (lost >= physics_scores(teacher, truths) - 1e-9).all()
    assert all(s.detection_rate == pytest.approx(0.5, abs=0.07) for s in scores)  # reported apart from the score


def test_scorecard_reports_the_physics_score_next_to_the_old_keys(horizon) -> None:
    _, truths, teacher = horizon
    scores = score_clips(teacher, FPS, truths)
    metrics, curve = scorecard(teacher, FPS, truths, scores=scores)
    assert metrics == scorecard(teacher, FPS, truths)[0]  # precomputed scores change nothing
    assert metrics["physics_score"] == pytest.approx(np.mean([s.physics_score for s in scores]))
    assert {f"kinematic_{k}" for k in KINEMATIC_KEYS} <= set(metrics)
    assert {"position_error", "position_error_late", "detection_rate", "flicker"} <= set(metrics)
    assert curve.shape == (teacher.shape[2],)
    with pytest.raises(ValueError):
        scorecard(teacher, FPS, truths, scores=scores[:2])


def test_the_physics_truth_is_the_nearest_by_the_physics_score() -> None:
    src = source(2.0)
    truths = [src.clip(PROMPTS[1], s)[1] for s in range(4)]
    exact = src.batch([PROMPTS[1]], [2])
    (score,) = score_clips(exact, FPS, [truths])
    assert score.physics_truth_seed == 2 and score.truth_seed == 2
    tracks = robust_trajectories(video_to_clip(exact[0], FPS).frames, truths[0].colors, FPS)
    assert score.physics_score == min(kinematic_score(tracks, gt).velocity_error for gt in truths)
