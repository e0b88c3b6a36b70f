"""Evaluation of generated clips against the physics renderer's ground truth.

- `physics`: per-frame colour unmixing, position error, motion magnitude, flicker.
- `trajectory`: robust object tracks (Hampel filter + short-gap filling over time).
- `kinematics`: estimators of g, floor contacts, restitution, velocities, oscillation period.
- `physics_metrics`: the law-specific errors per scene type (fall, slide, collide/hit, swing).
- `frechet`: FVD-style Fréchet distance on a fixed-seed random 3D-conv network.
- `kinematic_score`: the primary physics score (relative velocity error; no motion = 1).
- `scorecard`: all of the above for a set of clips (used by `benchmarks/quality.py` and the run's evaluator).
- `references`: reference clips no student should lose to (static, frozen frame, shuffled, reversed).
- `bootstrap`: means and paired differences with bootstrap CIs over (seed, prompt) cells.
- `d_probes`: does a discriminator prefer the real teacher clip to its time-corrupted / wrong-prompt copies?
"""

from __future__ import annotations

from afd_async.eval.physics import (
    MISSING_PENALTY,
    PhysicsReport,
    extract_trajectories,
    motion_magnitude,
    physics_error,
    temporal_flicker,
)

__all__ = [
    "MISSING_PENALTY",
    "PhysicsReport",
    "extract_trajectories",
    "motion_magnitude",
    "physics_error",
    "temporal_flicker",
]
