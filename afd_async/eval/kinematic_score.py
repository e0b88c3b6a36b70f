"""The primary physics score: how far the motion a clip shows is from the true motion, relative to the true motion.

Position error alone is won by clips without motion: discs of the right colour
held at the true first-frame positions are never far from objects that move a
little and then rest (issue 15). The score here compares *velocities* instead:

    velocity_error = sum_{k, t} ||v_shown(k, t) - v_true(k, t)|| / sum_{k, t} ||v_true(k, t)||

over objects `k` and frame intervals `t`, where both velocities come from the
same estimator (the finite difference of consecutive frames, times fps), the
truth sampled at the clip's own frame times, so an exact clip scores 0 at any
frame rate. An interval where an object is not found at both ends shows no
motion (`v_shown = 0`), so:

- a clip without motion scores exactly 1, whatever its positions;
- losing an object costs what showing it still would: never less;
- motion opposite to the truth scores 2; random jumps score more. Per-clip
  values are capped at `SCORE_CAP` (= 2, "as wrong as the truth played
  against itself") so that one wild clip cannot dominate a mean.

Normalising per clip (not per object) keeps an object that truly stays still
(a struck target before the hit) from dividing by ~0. Acceleration and speed
errors with the same normalisation are reported as parts, not mixed in: on
the eval prompts acceleration doubles the teacher's floor without changing
any ordering, and speed ignores direction (a fall played upwards scores 0).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from afd_async.eval.trajectory import Trajectories
from afd_async.physics.truth import GroundTruth

SCORE_CAP = 2.0  # velocity error of motion exactly opposite to the truth
NO_MOTION = 1.0  # the score of any clip that shows no motion (by construction)


@dataclass(frozen=True)
class KinematicScore:
    """Motion errors of one clip against one ground truth (lower is better; no motion = 1).

    Attributes:
        velocity_error: the primary physics score (capped at `SCORE_CAP`; NaN
            if the truth itself does not move, which no eval prompt does).
        acceleration_error: the same ratio for second differences (capped).
        speed_error: the same ratio for speeds `|v|`, direction ignored (capped).
        shown_motion: sum of shown speeds over sum of true speeds (1 = as much
            motion as the truth, 0 = none; not capped).
        detection_rate: fraction of (object, frame) where the object was found.
    """

    velocity_error: float
    acceleration_error: float
    speed_error: float
    shown_motion: float
    detection_rate: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def shown_velocities(tracks: Trajectories) -> np.ndarray:
    """`(K, T - 1, 2)` frame-to-frame velocities (frame units / s); 0 where the object is missing at either end."""
    both = tracks.found[:, 1:] & tracks.found[:, :-1]
    v = np.diff(np.nan_to_num(tracks.positions), axis=1) * tracks.fps
    return np.where(both[..., None], v, 0.0)


def true_velocities(gt: GroundTruth, times: np.ndarray, fps: float) -> np.ndarray:
    """`(K, T - 1, 2)` the truth's velocities through the same estimator, at the clip's frame `times`."""
    return np.diff(gt.positions_at(times), axis=1) * fps


def relative_error(shown: np.ndarray, truth: np.ndarray, *, cap: float = SCORE_CAP) -> float:
    """`sum ||shown - truth|| / sum ||truth||` over all leading axes (last axis: vector components).

    Zero `shown` gives exactly 1. Returns NaN when the truth is all zero.
    """
    den = float(np.linalg.norm(truth, axis=-1).sum())
    if den <= 0.0:
        return math.nan
    return float(min(np.linalg.norm(shown - truth, axis=-1).sum() / den, cap))


def kinematic_score(tracks: Trajectories, gt: GroundTruth, *, cap: float = SCORE_CAP) -> KinematicScore:
    """Score the motion of `tracks` against `gt` (same prompt; any seed)."""
    v_shown = shown_velocities(tracks)
    v_true = true_velocities(gt, tracks.times, tracks.fps)
    a_shown = np.diff(v_shown, axis=1) * tracks.fps
    a_true = np.diff(v_true, axis=1) * tracks.fps
    s_shown = np.linalg.norm(v_shown, axis=-1, keepdims=True)
    s_true = np.linalg.norm(v_true, axis=-1, keepdims=True)
    total = float(s_true.sum())
    return KinematicScore(
        velocity_error=relative_error(v_shown, v_true, cap=cap),
        acceleration_error=relative_error(a_shown, a_true, cap=cap),
        speed_error=relative_error(s_shown, s_true, cap=cap),
        shown_motion=float(s_shown.sum()) / total if total > 0 else math.nan,
        detection_rate=float(tracks.found.mean()),
    )
