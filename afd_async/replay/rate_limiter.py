"""Reverb-style samples-per-insert rate limiting (dm-reverb `SampleToInsertRatio`).

With reuse sampling a pair may be trained on more than once; the rate limiter
keeps the learner from starving (sampling faster than actors insert) and from
overfitting a stale buffer (sampling the same pairs over and over), by holding
the ratio of samples to inserts near `samples_per_insert`.

    diff = inserts × samples_per_insert − samples
    offset = samples_per_insert × min_size_to_sample
    min_diff = offset − error_buffer,  max_diff = offset + error_buffer

Invariant (once `inserts ≥ min_size_to_sample`): `min_diff ≤ diff ≤ max_diff`.
A sample is allowed when `inserts ≥ min_size_to_sample` and it keeps
`diff ≥ min_diff`; an insert is allowed while fewer than `min_size_to_sample`
items were inserted, or when it keeps `diff ≤ max_diff`. Blocking calls take a
timeout and return False when it passes.
"""

from __future__ import annotations

import threading
import time
from typing import Optional


class RateLimiter:
    """Thread-safe; one per replay buffer."""

    def __init__(self, samples_per_insert: float, *, min_size_to_sample: int = 1, error_buffer: Optional[float] = None) -> None:
        if samples_per_insert <= 0:
            raise ValueError(f"samples_per_insert must be > 0, got {samples_per_insert}")
        if min_size_to_sample < 1:
            raise ValueError(f"min_size_to_sample must be >= 1, got {min_size_to_sample}")
        if error_buffer is None:
            error_buffer = max(1.0, samples_per_insert) * 2
        if error_buffer < max(1.0, samples_per_insert):
            # Narrower than one insert's worth of samples: neither side could ever move.
            raise ValueError(f"error_buffer must be >= max(1, samples_per_insert) = {max(1.0, samples_per_insert)}, got {error_buffer}")
        self.samples_per_insert = float(samples_per_insert)
        self.min_size_to_sample = int(min_size_to_sample)
        self.error_buffer = float(error_buffer)
        offset = self.samples_per_insert * self.min_size_to_sample
        self.min_diff, self.max_diff = offset - self.error_buffer, offset + self.error_buffer
        self.inserts = 0
        self.samples = 0
        self._cv = threading.Condition()

    @property
    def diff(self) -> float:
        return self.inserts * self.samples_per_insert - self.samples

    def can_insert(self, n: int = 1) -> bool:
        with self._cv:
            return self._can_insert(n)

    def can_sample(self, n: int = 1) -> bool:
        with self._cv:
            return self._can_sample(n)

    def _can_insert(self, n: int) -> bool:
        if self.inserts + n <= self.min_size_to_sample:
            return True
        return (self.inserts + n) * self.samples_per_insert - self.samples <= self.max_diff

    def _can_sample(self, n: int) -> bool:
        return self.inserts >= self.min_size_to_sample and self.diff - n >= self.min_diff

    def await_insert(self, n: int = 1, timeout_s: float = 1.0) -> bool:
        """Wait until `n` inserts are allowed and record them; False after `timeout_s`."""
        return self._await(self._can_insert, n, timeout_s, insert=True)

    def await_sample(self, n: int = 1, timeout_s: float = 1.0) -> bool:
        """Wait until `n` samples are allowed and record them; False after `timeout_s`."""
        return self._await(self._can_sample, n, timeout_s, insert=False)

    def _await(self, ok, n: int, timeout_s: float, *, insert: bool) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while not ok(n):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            if insert:
                self.inserts += n
            else:
                self.samples += n
            self._cv.notify_all()
            return True

    def state_dict(self) -> dict[str, float]:
        with self._cv:
            return {"samples_per_insert": self.samples_per_insert, "min_size_to_sample": self.min_size_to_sample,
                    "error_buffer": self.error_buffer, "inserts": self.inserts, "samples": self.samples}

    def load_state_dict(self, state: dict[str, float]) -> None:
        if float(state["samples_per_insert"]) != self.samples_per_insert:
            raise ValueError(f"state has samples_per_insert {state['samples_per_insert']}, limiter {self.samples_per_insert}")
        with self._cv:
            self.inserts, self.samples = int(state["inserts"]), int(state["samples"])
            self._cv.notify_all()
