"""Learner busy fraction: time in the optimizer step ÷ wall time, once warm.

"Warm" starts when the first `warm_batches` batches are done (imports, lazy
initialisation, the first D and the first feed round trip are start-up, not
steady state). The rest of the wall time is split into named waits, so a busy
fraction below the goal (≥ 0.95) says where the learner waited:

    step        forward/backward/optimizer (+ θ_old soft update): the busy part
    batch_wait  waiting for the feeder (rollouts or teacher clips not ready)
    d_fetch     (student learner) fetching and loading a discriminator version already announced
    d_wait      (student learner) waiting for a new enough discriminator to be announced and fetched
    publish     weights: the student learner's snapshot of θ_old (its publish runs in the background),
                the D learner's snapshot, hash and announce; Redis status writes
    checkpoint  writing learner checkpoints
    other       decoding the batch, text encoding, evaluation, bookkeeping
"""

from __future__ import annotations

import time
from typing import Callable


class BusyMeter:
    def __init__(self, warm_batches: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if warm_batches < 1:
            raise ValueError(f"warm_batches must be >= 1, got {warm_batches}")
        self.warm_batches, self.clock = warm_batches, clock
        self.batches = 0
        self.t_warm: float | None = None
        self.seconds: dict[str, float] = {}

    def add(self, **seconds: float) -> None:
        """Account one batch's time by part (`step=…, batch_wait=…`); parts before warm-up ends are ignored."""
        self.batches += 1
        if self.batches < self.warm_batches:
            return
        if self.batches == self.warm_batches:
            self.t_warm = self.clock()
            return
        for k, v in seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + max(0.0, float(v))

    @property
    def wall(self) -> float:
        return 0.0 if self.t_warm is None else self.clock() - self.t_warm

    @property
    def ratio(self) -> float:
        """Busy fraction since warm (0 before the first warm batch)."""
        wall = self.wall
        return self.seconds.get("step", 0.0) / wall if wall > 0 else 0.0

    def breakdown(self) -> dict[str, float]:
        """Fraction of warm wall time per part, plus `unaccounted` (time between parts)."""
        wall = self.wall
        if wall <= 0:
            return {}
        out = {k: v / wall for k, v in sorted(self.seconds.items())}
        out["unaccounted"] = max(0.0, 1.0 - sum(out.values()))
        return out
