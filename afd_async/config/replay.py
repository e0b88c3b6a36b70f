"""Replay schema (config group `replay`). Filled in by the async runtime."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ReplayConfig:
    """The Redis pair stream and its admission rules."""

    staleness: int = 1  # k: learner_version − policy_version allowed
    stream_maxlen: int = 10000  # approximate cap on pair-stream length

    def __post_init__(self) -> None:
        if self.staleness < 0:
            raise ValueError(f"staleness must be >= 0, got {self.staleness}")
