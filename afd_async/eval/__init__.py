"""Evaluation of generated clips against the physics renderer's ground truth."""

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
