"""Replay schema (config group `replay`): the pair stream, staleness bounds, group leases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ReplayConfig:
    """The Redis pair stream and the staleness rules (DESIGN.md §4).

    Staleness k: an actor rolls out group step g only with θ_old version ≥ g − k, and
    groups are admitted only while g ≤ learner_version + k (admission, not discard);
    the feeder still drops (and counts, and re-rolls) any pair beyond k.
    """

    staleness: int = 1  # k: learner_version − policy_version allowed (0 = the synchronous limit)
    d_staleness: int = 0  # k_D: the student learner scores with a D at most this many versions old
    stream_maxlen: int = 10000  # approximate cap on pair-stream length (trimmed below what all groups acked)
    latent_dtype: Literal["float32", "float16", "bfloat16"] = "float32"  # student latent on the wire
    group_lease_s: float = 300.0  # a claimed group not written within this is re-rolled by another actor
    teacher_lookahead: int = 4  # groups whose teacher clips are requested ahead of the rollouts
    teacher_wait_s: float = 600.0  # longest a student actor waits for a group's teacher clips
    blob_ttl_s: float = 3600.0  # payload blobs (large pairs) expire after this
    dedupe_window_s: int = 3600  # a pair id is remembered this long for at-most-once training

    def __post_init__(self) -> None:
        if self.staleness < 0 or self.d_staleness < 0:
            raise ValueError(f"staleness and d_staleness must be >= 0, got {self.staleness}, {self.d_staleness}")
        if self.group_lease_s <= 0 or self.teacher_wait_s <= 0 or self.blob_ttl_s <= 0:
            raise ValueError("group_lease_s, teacher_wait_s and blob_ttl_s must be > 0")
        if self.teacher_lookahead < 0:
            raise ValueError("teacher_lookahead must be >= 0")
