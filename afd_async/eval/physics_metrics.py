"""Physics errors of one clip against the ground truth of its prompt, per scene type.

Which law is checked depends on what the renderer can show (`Scene.motion`):

==========  =============================================================  =========================
motion      metric (relative errors are unitless, times in seconds)        key
==========  =============================================================  =========================
every       position error per frame (L2, frame units; missed = 0.5)       `position_error`, `position_error_curve`
fall        shared downward acceleration over the shown free flights        `accel_error` (|g - g*| / g*)
fall        floor contact times (rebounds and arrival at rest)             `bounce_time_error` (s, capped)
fall        visible rebound count                                                `bounce_count_error`
fall        restitution from apex heights (bounce scenes)                  `restitution_error` (|e - e*|)
slide       net displacement of the slider over the clip (friction stop)   `stopping_distance_error`
collide/hit momentum change through the collision vs truth's (same sampling)  `momentum_error`
collide/hit object velocities before/after vs truth                        `collision_velocity_error`
swing       oscillation period of the bob                                  `period_error` (|P - P*| / P*)
==========  =============================================================  =========================

Every estimator is applied unchanged to the teacher's own clips by the
benchmark, which gives each metric's measurement floor at the student's
resolution and frame rate (8 fps makes contact times uncertain by ~half a
frame). A metric that does not apply to the scene is absent from the dict; one
that applies but cannot be measured (e.g. the object never swings) takes its
cap (`CAPS`), so a frozen clip can never score better than a moving one.
"""

from __future__ import annotations

import math

import numpy as np

from afd_async.eval.kinematics import (
    fit_gravity,
    floor_contacts,
    oscillation_period,
    restitution_from_apexes,
    velocity_at,
)
from afd_async.eval.physics import MISSING_PENALTY
from afd_async.eval.trajectory import Trajectories
from afd_async.physics.truth import GroundTruth

# Error charged when a law applies but the clip shows nothing to measure, and
# the ceiling of each error (one wild estimate must not dominate a mean).
CAPS: dict[str, float] = {
    "accel_error": 1.0,
    "bounce_time_error": 0.5,
    "bounce_count_error": 4.0,
    "restitution_error": 1.0,
    "stopping_distance_error": 1.0,
    "momentum_error": 1.0,
    "collision_velocity_error": 1.0,
    "period_error": 1.0,
}
VELOCITY_WINDOW_S = 0.4  # how much of the track before/after a collision the velocity fits use
COLLISION_GUARD_S = 0.07  # samples this close to the collision are excluded (contact blur)
MIN_FLIGHT_FRAMES = 2  # a rebound whose flight is shorter than this many frames is not counted or timed


def _capped(key: str, value: float) -> float:
    cap = CAPS[key]
    return cap if not math.isfinite(value) else float(min(abs(value), cap))


def position_errors(tracks: Trajectories, gt: GroundTruth) -> np.ndarray:
    """`(K, T)` distance of each tracked centre from the truth (missing: `MISSING_PENALTY`)."""
    truth = gt.positions_at(tracks.times)
    dist = np.linalg.norm(np.nan_to_num(tracks.positions) - truth, axis=-1)
    return np.where(tracks.found, dist, MISSING_PENALTY)


def scene_physics_errors(tracks: Trajectories, gt: GroundTruth) -> dict[str, float]:
    """The law-specific errors that apply to `gt.scene.motion` (see the module table)."""
    motion = gt.scene.motion
    if motion == "fall":
        return _fall(tracks, gt)
    if motion == "slide":
        return _slide(tracks, gt)
    if motion in ("collide", "hit"):
        return _collision(tracks, gt)
    if motion == "swing":
        return _swing(tracks, gt)
    return {}


def _in_clip(times: list[float], tracks: Trajectories) -> list[float]:
    end = float(tracks.times[-1]) + 0.5 / tracks.fps
    return [t for t in times if t <= end]


def _fall(tracks: Trajectories, gt: GroundTruth) -> dict[str, float]:
    t, y = tracks.times, tracks.positions[0, :, 1]
    bounces = _in_clip(gt.bounce_times(0), tracks)
    rest_events = _in_clip([e.time_s for e in gt.events_of("rest", 0)], tracks)
    contacts = sorted(bounces + rest_events[:1])
    out: dict[str, float] = {}
    # A rebound is only countable at this frame rate if its flight lasts two frames:
    # the tail of a settling ball's rebounds is invisible at 8 fps, even in the teacher.
    nxt = [*contacts[1:], math.inf]
    visible = [b for b, n in zip(bounces, nxt) if n - b >= MIN_FLIGHT_FRAMES / tracks.fps]
    timed = visible + (rest_events[:1] if len(visible) == len(bounces) else [])
    rebounds, rest = floor_contacts(t, y)
    observed = rebounds + ([rest] if rest is not None else [])
    # Free flight is cut at every contact the clip shows (wrong gravity bounces at the wrong times) and every
    # true one (rebounds too small to see at this frame rate): cutting a parabola more often never biases
    # the shared g, missing a cut does. The fit ends where the clip comes to rest.
    end = rest if rest is not None else float(t[-1]) + 1.0
    own = [r for r in rebounds if min((abs(r - c) for c in bounces), default=math.inf) > 0.75 / tracks.fps]
    cuts = sorted({0.0, *own, *(c for c in contacts if c < end), end})  # a shown contact near a true one is that one
    g_obs = fit_gravity(t, y, cuts)
    truth_y = gt.positions_at(t)[0, :, 1]
    if math.isfinite(fit_gravity(t, truth_y, [0.0, *contacts] if rest_events else [0.0, *contacts, end])):
        # (otherwise no free flight lasts three frames even in the truth: not measurable at this rate)
        out["accel_error"] = _capped("accel_error", (g_obs - gt.gravity) / gt.gravity)
    if timed:
        errs = [min((abs(c - o) for o in observed), default=math.inf) for c in timed]
        out["bounce_time_error"] = float(np.mean([_capped("bounce_time_error", e) for e in errs]))
    out["bounce_count_error"] = _capped("bounce_count_error", len(rebounds) - len(visible))
    if visible:
        y_floor = (gt.floor_y or 1.0) - gt.objects[0].radius
        e_obs = restitution_from_apexes(t, y, rebounds, y_floor, max_bounces=len(visible))
        out["restitution_error"] = _capped("restitution_error", e_obs - gt.restitution)
    return out


def _slide(tracks: Trajectories, gt: GroundTruth) -> dict[str, float]:
    x = tracks.positions[0, :, 0]
    truth = gt.positions_at(tracks.times)[0, :, 0]
    seen = np.flatnonzero(np.isfinite(x))
    if seen.size < 2:
        return {"stopping_distance_error": CAPS["stopping_distance_error"]}
    first, last = seen[0], seen[-1]  # displacement between the same frames in clip and truth
    d_true = float(truth[last] - truth[first])
    if abs(d_true) < 1e-3:
        return {"stopping_distance_error": CAPS["stopping_distance_error"]}
    d_obs = float(x[last] - x[first])
    return {"stopping_distance_error": _capped("stopping_distance_error", (d_obs - d_true) / d_true)}


def _collision(tracks: Trajectories, gt: GroundTruth) -> dict[str, float]:
    """Momentum exchange at the collision, measured against the truth sampled the same way.

    At 8 fps the objects often stop (friction) within a frame or two of the
    collision, so raw before/after momenta of even the teacher's clip differ by
    ~30 %; the truth's positions at the clip's frame times, put through the same
    velocity estimator around the true collision time, give the reference
    exchange, and a perfect clip scores 0.
    """
    t_c = gt.collision_time()
    t = tracks.times
    if t_c is None or t_c > float(t[-1]) - 2 / tracks.fps:
        return {}
    masses = np.array([o.mass for o in gt.objects])

    def velocities(track: np.ndarray) -> np.ndarray:
        before = [velocity_at(t, track[k, :, 0], t_c - VELOCITY_WINDOW_S, t_c - COLLISION_GUARD_S, t_c) for k in range(2)]
        after = [velocity_at(t, track[k, :, 0], t_c + COLLISION_GUARD_S, t_c + VELOCITY_WINDOW_S, t_c) for k in range(2)]
        return np.array([before, after])  # (phase, object)

    v_obs = velocities(tracks.positions)
    v_ref = velocities(gt.positions_at(t))
    scale = float(np.abs(masses * v_ref[0]).sum())
    if not np.isfinite(v_ref).all() or scale <= 0:
        return {}
    if not np.isfinite(v_obs).all():
        return {"momentum_error": CAPS["momentum_error"], "collision_velocity_error": CAPS["collision_velocity_error"]}
    dp_obs = float((masses * (v_obs[1] - v_obs[0])).sum())
    dp_ref = float((masses * (v_ref[1] - v_ref[0])).sum())
    return {
        "momentum_error": _capped("momentum_error", (dp_obs - dp_ref) / scale),
        "collision_velocity_error": _capped(
            "collision_velocity_error", float(np.abs(v_obs - v_ref).mean()) / float(np.abs(v_ref).max())
        ),
    }


def _swing(tracks: Trajectories, gt: GroundTruth) -> dict[str, float]:
    period_true = gt.pendulum_period or gt.small_angle_period
    if period_true is None:
        return {}
    p_obs = oscillation_period(tracks.times, tracks.positions[0, :, 0])
    return {"period_error": _capped("period_error", (p_obs - period_true) / period_true)}
