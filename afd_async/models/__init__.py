"""Models: the tiny causal student and its schedule (plus the discriminator and text encoders in their modules)."""

from __future__ import annotations

from afd_async.models.kv_cache import KVCache
from afd_async.models.schedule import rollout_sigmas, sample_t, shift_t
from afd_async.models.tiny_student import StudentTrajectory, TinyCausalStudent

__all__ = ["KVCache", "StudentTrajectory", "TinyCausalStudent", "rollout_sigmas", "sample_t", "shift_t"]
