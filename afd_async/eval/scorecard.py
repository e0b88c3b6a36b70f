"""One scorecard for a set of generated clips: physics, motion, flicker and distribution distance.

Each clip is scored against the *nearest* of a few ground-truth trajectories of
its prompt (seeds `0..n-1`; the student never sees the jitter seed, so any of
them is a physically correct answer), chosen by position error; the
law-specific errors (`afd_async.eval.physics_metrics`) are then read against
that same truth. Means are over prompts; a law-specific error is averaged over
the prompts it applies to (its count is reported as `n_<key>`).

The primary physics score (`physics_score`, `afd_async.eval.kinematic_score`)
is read against the truth nearest by *that* score: a clip without motion
scores exactly 1 and the teacher's own clips ~0.07, so a clip scores below 1
only by showing motion that matches the truth (issue 15). `score_clips` returns the per-prompt
scores (for `afd_async.eval.bootstrap`), `summarise` turns them into the
metrics, and `scorecard` does both plus the teacher-relative keys.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from afd_async.eval.frechet import RandomVideoFeatures, video_frechet_distance
from afd_async.eval.kinematic_score import KinematicScore, kinematic_score
from afd_async.eval.physics import motion_magnitude, temporal_flicker
from afd_async.eval.physics_metrics import position_errors, scene_physics_errors
from afd_async.eval.trajectory import robust_trajectories
from afd_async.physics.truth import GroundTruth
from afd_async.video.clip import Clip

LAW_KEYS = (
    "accel_error", "bounce_time_error", "bounce_count_error", "restitution_error",
    "stopping_distance_error", "momentum_error", "collision_velocity_error", "period_error",
)
KINEMATIC_KEYS = ("velocity_error", "acceleration_error", "speed_error", "shown_motion")  # detection: `detection_rate`


@dataclass(frozen=True)
class ClipScore:
    """Scores of one clip against its nearest ground truth.

    Attributes:
        position_curve: `(T,)` mean over objects of the per-frame position error.
        detection_rate: fraction of (object, frame) with a position.
        laws: the law-specific errors that apply to the scene.
        motion_magnitude: mean absolute frame difference (pixels in [0, 1]).
        object_speed: mean tracked object path length per second (frame units).
        flicker: `temporal_flicker` of the clip.
        truth_seed: index of the ground truth nearest by position error (the
            position and law metrics are read against it).
        kinematic: motion errors against the truth nearest by the primary
            physics score (`physics_truth_seed`).
        physics_truth_seed: index of that truth.
    """

    position_curve: np.ndarray
    detection_rate: float
    laws: dict[str, float]
    motion_magnitude: float
    object_speed: float
    flicker: float
    truth_seed: int
    kinematic: KinematicScore
    physics_truth_seed: int

    @property
    def position_error(self) -> float:
        return float(self.position_curve.mean())

    @property
    def physics_score(self) -> float:
        """The primary physics score: relative velocity error (0 exact, 1 no motion, capped at 2)."""
        return self.kinematic.velocity_error


def score_clip(clip: Clip, truths: Sequence[GroundTruth]) -> ClipScore:
    """Score `clip` against the nearest of `truths` (same prompt, different seeds).

    Position and law metrics use the truth nearest by position error (as they
    always have); the physics score uses the one nearest by itself, ties (a
    clip without motion scores 1 against every seed) broken by position.
    """
    if not truths:
        raise ValueError("score_clip needs at least one ground truth")
    tracks = robust_trajectories(clip.frames, truths[0].colors, clip.fps)  # colours are per prompt, not per seed
    errs = [position_errors(tracks, gt) for gt in truths]
    pos = [float(e.mean()) for e in errs]
    idx = int(np.argmin(pos))
    kin = [kinematic_score(tracks, gt) for gt in truths]
    k_idx = min(range(len(truths)), key=lambda i: (_nan_last(kin[i].velocity_error), pos[i]))
    return ClipScore(
        position_curve=errs[idx].mean(axis=0),
        detection_rate=float(tracks.found.mean()),
        laws=scene_physics_errors(tracks, truths[idx]),
        motion_magnitude=motion_magnitude(clip),
        object_speed=float(tracks.speed().mean()),
        flicker=temporal_flicker(clip),
        truth_seed=idx,
        kinematic=kin[k_idx],
        physics_truth_seed=k_idx,
    )


def _nan_last(x: float) -> float:
    return float("inf") if np.isnan(x) else x


def video_to_clip(video: torch.Tensor, fps: float) -> Clip:
    """`(3, F, H, W)` in [-1, 1] -> uint8 `Clip`."""
    frames = video.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()
    return Clip(np.ascontiguousarray(frames), fps)


def score_clips(videos: torch.Tensor, fps: float, truths: Sequence[Sequence[GroundTruth]]) -> list[ClipScore]:
    """Per-prompt scores of `videos` `(N, 3, F, H, W)` in [-1, 1] (one per prompt, aligned with `truths`).

    `[s.physics_score for s in score_clips(...)]` is the per-prompt primary
    score that `afd_async.eval.bootstrap` resamples.
    """
    if len(videos) != len(truths):
        raise ValueError(f"{len(videos)} videos but {len(truths)} truth lists")
    return [score_clip(video_to_clip(v, fps), t) for v, t in zip(videos, truths)]


def summarise(scores: Sequence[ClipScore]) -> tuple[dict[str, float], np.ndarray]:
    """Means over prompts of `scores` (see `scorecard` for the keys), and the `(T,)` mean position-error curve."""
    curve = np.mean([s.position_curve for s in scores], axis=0)
    half = max(1, curve.size // 2)
    out: dict[str, float] = {
        "position_error": float(curve.mean()),
        "position_error_early": float(curve[:half].mean()),
        "position_error_late": float(curve[half:].mean()) if curve.size > 1 else float(curve.mean()),
        "detection_rate": float(np.mean([s.detection_rate for s in scores])),
        "motion_magnitude": float(np.mean([s.motion_magnitude for s in scores])),
        "object_speed": float(np.mean([s.object_speed for s in scores])),
        "flicker": float(np.mean([s.flicker for s in scores])),
        "physics_score": float(np.nanmean([s.physics_score for s in scores])),
    }
    for k in KINEMATIC_KEYS:
        out[f"kinematic_{k}"] = float(np.nanmean([getattr(s.kinematic, k) for s in scores]))
    laws: dict[str, list[float]] = defaultdict(list)
    for s in scores:
        for k, v in s.laws.items():
            laws[k].append(v)
    for k in LAW_KEYS:
        if laws.get(k):
            out[k] = float(np.mean(laws[k]))
            out[f"n_{k}"] = float(len(laws[k]))
    return out, curve


def scorecard(
    videos: torch.Tensor,
    fps: float,
    truths: Sequence[Sequence[GroundTruth]],
    *,
    teacher_videos: torch.Tensor | None = None,
    net: RandomVideoFeatures | None = None,
    scores: Sequence[ClipScore] | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Mean scores of `videos` `(N, 3, F, H, W)` (one per prompt, aligned with `truths`).

    Args:
        videos: generated clips in [-1, 1].
        fps: their frame rate.
        truths: per prompt, the ground truths of a few seeds.
        teacher_videos: `(M, 3, F, H, W)` teacher clips of the same prompts and
            length: adds `motion_ratio` (student / teacher motion magnitude),
            `speed_ratio` (tracked object speed) and `frechet` (FVD-style).
        scores: `score_clips(videos, fps, truths)` if already computed (the
            per-prompt values a caller also bootstraps), so clips are tracked once.

    Returns:
        (metrics, `(T,)` mean per-frame position error over prompts). Metrics:
        `physics_score` (primary, `afd_async.eval.kinematic_score`; no motion
        = 1) with its parts `kinematic_<part>` (`velocity_error` = the score,
        `acceleration_error`, `speed_error`, `shown_motion`),
        `position_error`, `position_error_early` / `_late`
        (first / second half of the frames), `detection_rate`,
        `motion_magnitude`, `object_speed`, `flicker`, each law key (mean over
        the prompts it applies to) with `n_<key>`, and the teacher-relative
        keys above.
    """
    if len(videos) != len(truths):
        raise ValueError(f"{len(videos)} videos but {len(truths)} truth lists")
    if scores is None:
        scores = score_clips(videos, fps, truths)
    elif len(scores) != len(videos):
        raise ValueError(f"{len(scores)} scores for {len(videos)} videos")
    out, curve = summarise(scores)
    if teacher_videos is not None:
        t_clips = [video_to_clip(v, fps) for v in teacher_videos]
        t_motion = float(np.mean([motion_magnitude(c) for c in t_clips]))
        t_speed = float(np.mean([robust_trajectories(c.frames, t[0].colors, fps).speed().mean()
                                 for c, t in zip(t_clips, truths)]))
        out["motion_ratio"] = out["motion_magnitude"] / max(t_motion, 1e-9)
        out["speed_ratio"] = out["object_speed"] / max(t_speed, 1e-9)
        out["frechet"] = video_frechet_distance(videos, teacher_videos, net=net)
    return out, curve
