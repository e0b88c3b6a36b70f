"""Physics evaluation: where are the objects in a generated clip, and where should they be?

Objects are found by colour, not by a learned detector, because the renderer
draws each object in one known saturated colour on a dark, known backdrop.
Each pixel is explained as a partial-coverage mix of a backdrop colour and an
object colour (see `extract_trajectories`); the coverage-weighted centroid is
then unbiased for anti-aliased shapes and robust to the blur, dimming and
noise of a weak 32x32 student: faded edge pixels count in proportion to their
coverage, background pixels and the ground not at all.

`physics_error` compares extracted centroids with `GroundTruth.positions_at`
at the clip's own frame times (frame `i` shows time `i / fps`), so a clip at
any size and frame rate can be scored against the teacher's dense truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from afd_async.physics.scene import BACKGROUND_RGB, GROUND_RGB, ROD_RGB
from afd_async.physics.truth import GroundTruth
from afd_async.video.clip import Clip

MISSING_PENALTY = 0.5
"""Error charged for a frame where an object is not found: half the frame size,
i.e. worse than any detection in the correct half of the frame, so a blank or
colourless clip can never score better than a clip that shows the objects."""

BACKDROP_RGB: tuple[tuple[int, int, int], ...] = (BACKGROUND_RGB, GROUND_RGB, ROD_RGB)


def extract_trajectories(
    frames: np.ndarray,
    colors: Sequence[tuple[int, int, int]],
    *,
    max_distance: float = 150.0,
    min_weight: float | None = None,
) -> np.ndarray:
    """Per-frame coverage-weighted centroids of each object colour.

    Every pixel is explained as a mix of a backdrop colour and one other colour
    (exactly how anti-aliasing, blur and dimming make it): for object colour c
    and backdrop b, alpha = the projection of (pixel - b) onto (c - b), clipped
    to [0, 1], and the residual is the distance from the pixel to that mix. The
    pixel goes to the colour with the smallest residual; the backdrop colours
    themselves and the pendulum rod compete too (and win ties), so the ground or
    a grey rod is never mistaken for a dim white object. The pixel's weight for
    its object is its coverage, (alpha - 0.15) / 0.85 (so faint noise on the
    background counts for nothing), times (1 - residual / max_distance).

    Args:
        frames: `uint8` `(T, H, W, 3)` RGB.
        colors: the K object colours (e.g. `GroundTruth.colors`).
        max_distance: RGB residual at which a pixel's weight reaches 0.
        min_weight: total weight (in pixel units) needed to count as detected;
            default `max(0.5, 0.001 * H * W)`, a fraction of a small object's area.

    Returns:
        `(K, T, 2)` float64 centroids normalised to [0, 1] (x right, y down;
        pixel centres at `(i + 0.5) / size`), NaN where the object is not found.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    t, h, w = frames.shape[:3]
    k = len(colors)
    out = np.full((k, t, 2), np.nan)
    if k == 0:
        return out
    if min_weight is None:
        min_weight = max(0.5, 0.001 * h * w)
    pix = frames.reshape(-1, 3).astype(np.float32)
    bases = np.asarray([BACKGROUND_RGB, GROUND_RGB], np.float32)
    targets = np.asarray([ROD_RGB, *colors], np.float32)  # (1 + K, 3)
    alphas, mixes = _mix(pix, bases, targets)  # (N, 1 + K)
    points = np.sqrt(((pix[:, None, :] - bases[None]) ** 2).sum(-1))  # (N, 2): pure backdrop
    # Competing explanations, distractors (backdrop, rod) first so that they win ties.
    stacked = np.concatenate([points, mixes], axis=1)  # (N, 3 + K)
    winner = stacked.argmin(axis=1) - 3  # object index, or < 0 for a distractor
    ys, xs = np.divmod(np.arange(h * w), w)
    cx, cy = (xs + 0.5) / w, (ys + 0.5) / h
    for j in range(k):
        coverage = np.clip((alphas[:, 1 + j] - _MIN_ALPHA) / (1.0 - _MIN_ALPHA), 0.0, 1.0)
        fit = np.clip(1.0 - mixes[:, 1 + j] / max_distance, 0.0, 1.0)
        weight = np.where(winner == j, coverage * fit, 0.0).reshape(t, h * w)
        total = weight.sum(-1)  # (T,)
        found = total >= min_weight
        safe = np.where(found, total, 1.0)
        out[j, :, 0] = np.where(found, weight @ cx / safe, np.nan)
        out[j, :, 1] = np.where(found, weight @ cy / safe, np.nan)
    return out


_MIN_ALPHA = 0.15


def _mix(pix: np.ndarray, bases: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best mix of each target colour over any base for pixels `(N, 3)`.

    Returns:
        alpha `(N, C)` (the target's share) and residual `(N, C)` (RGB distance
        from the pixel to base + alpha (target - base)), for the best base.
    """
    best_alpha = best_res = None
    for base in bases:
        d = pix - base  # (N, 3)
        u = targets - base  # (C, 3)
        uu = np.maximum((u * u).sum(-1), 1e-6)  # (C,)
        proj = d @ u.T  # (N, C)
        alpha = np.clip(proj / uu, 0.0, 1.0)
        res2 = (d * d).sum(-1, keepdims=True) - 2.0 * alpha * proj + alpha * alpha * uu
        res = np.sqrt(np.maximum(res2, 0.0))
        if best_res is None:
            best_alpha, best_res = alpha, res
        else:
            better = res < best_res
            best_alpha = np.where(better, alpha, best_alpha)
            best_res = np.where(better, res, best_res)
    return best_alpha, best_res  # type: ignore[return-value]


@dataclass(frozen=True)
class PhysicsReport:
    """How physically right a clip is against ground truth (lower error is better).

    Attributes:
        position_error: mean over objects and frames of the L2 distance between
            extracted and true centres, normalised coordinates; a missed
            detection counts `MISSING_PENALTY`.
        detection_rate: fraction of (object, frame) pairs where the object was found.
        velocity_error: mean L2 difference of frame-to-frame velocities (frame
            units per second) over consecutive frames where the object was found
            in both; NaN when there is no such pair.
        final_position_error: position error at the last frame only (did it end
            up where physics says, e.g. resting after its bounces).
        per_object_error: position error per object, in scene order.
        motion_magnitude: `motion_magnitude(clip)`, to spot frozen clips.
        temporal_flicker: `temporal_flicker(clip)`, to spot flickering ones.
        true_motion: mean per-second path length of the true trajectories, the
            scale against which `position_error` should be read.
        num_frames: frames scored.
    """

    position_error: float
    detection_rate: float
    velocity_error: float
    final_position_error: float
    per_object_error: tuple[float, ...]
    motion_magnitude: float
    temporal_flicker: float
    true_motion: float
    num_frames: int

    def as_dict(self) -> dict[str, float]:
        """Flat scalar metrics for logging (per-object errors as `object_<k>_error`)."""
        out = {k: float(v) for k, v in asdict(self).items() if k != "per_object_error"}
        out.update({f"object_{k}_error": v for k, v in enumerate(self.per_object_error)})
        return out


def physics_error(clip: Clip, gt: GroundTruth, *, max_distance: float = 150.0) -> PhysicsReport:
    """Score `clip` against the ground truth of the prompt it was generated for.

    Args:
        clip: generated (or rendered) clip at any size and fps, frame `i` at `i / fps`.
        gt: the ground truth of the same prompt (and seed, for the teacher's own clip).
        max_distance: passed to `extract_trajectories`.
    """
    times = np.arange(clip.num_frames) / clip.fps
    truth = gt.positions_at(times)  # (K, T, 2)
    seen = extract_trajectories(clip.frames, gt.colors, max_distance=max_distance)
    found = ~np.isnan(seen[..., 0])
    dist = np.where(found, np.linalg.norm(np.nan_to_num(seen) - truth, axis=-1), MISSING_PENALTY)
    both = found[:, 1:] & found[:, :-1]
    if both.any():
        v_seen = np.diff(seen, axis=1) * clip.fps
        v_true = np.diff(truth, axis=1) * clip.fps
        velocity_error = float(np.linalg.norm(v_seen - v_true, axis=-1)[both].mean())
    else:
        velocity_error = math.nan
    path = np.linalg.norm(np.diff(gt.positions, axis=1), axis=-1).sum(axis=1) / max(gt.seconds, 1e-9)
    return PhysicsReport(
        position_error=float(dist.mean()),
        detection_rate=float(found.mean()),
        velocity_error=velocity_error,
        final_position_error=float(dist[:, -1].mean()),
        per_object_error=tuple(float(e) for e in dist.mean(axis=1)),
        motion_magnitude=motion_magnitude(clip),
        temporal_flicker=temporal_flicker(clip),
        true_motion=float(path.mean()),
        num_frames=clip.num_frames,
    )


def _frames(clip: Clip | np.ndarray) -> np.ndarray:
    frames = clip.frames if isinstance(clip, Clip) else np.asarray(clip)
    return frames.astype(np.float32) / 255.0


def motion_magnitude(clip: Clip | np.ndarray) -> float:
    """Mean absolute change between consecutive frames, in [0, 1] (0: frozen or 1 frame)."""
    f = _frames(clip)
    if f.shape[0] < 2:
        return 0.0
    return float(np.abs(np.diff(f, axis=0)).mean())


def temporal_flicker(clip: Clip | np.ndarray) -> float:
    """Mean magnitude of intensity changes that the next frame immediately undoes, in [0, 1].

    Per pixel and channel, two consecutive changes d_t, d_{t+1} of opposite sign
    contribute their geometric mean sqrt(-d_t d_{t+1}); same-sign or zero
    changes contribute nothing. Smooth motion changes
    a pixel once (dark -> bright and it stays) and scores ~0; noise and
    brightness flicker reverse every frame and score high.
    """
    f = _frames(clip)
    if f.shape[0] < 3:
        return 0.0
    d = np.diff(f, axis=0)
    return float(np.sqrt(np.maximum(-d[1:] * d[:-1], 0.0)).mean())
