"""A D step on a batch: the Bradley–Terry step call(s) and the D probes after each, shared by both modes.

    probes.before_step(updater, batch)                                       # D's scores of clips it has not seen
    for each call: updater.step(batch); probes.after_step(updater, batch)   # probes when due

`afd sync` (`sync_loop.py`) and the D learner role (`runtime/d_learner.py`) both call `d_steps`, so the two
modes run one implementation of "D on a batch"; what differs (where the batch comes from, publishing D, the
status hash) stays with the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from afd_async.train.batch import PairBatch
from afd_async.train.d_update import DiscriminatorUpdater


class Probes(Protocol):
    """What `d_steps` calls around each D step: `DProbeMonitor` (inline), or the D learner's
    `runtime/background_probes.BackgroundProbes` (the same probes on a thread)."""

    def before_step(self, updater: Any, batch: Any) -> None: ...

    def after_step(self, updater: Any, batch: Any = None) -> Any: ...


@dataclass
class DSteps:
    """What `d_steps` did: each call's metrics (a call's keys vary: `d_grad_norm` only when it stepped) and the
    seconds the probes took, which the D learner leaves out of its step time."""

    per_call: list[dict[str, float]] = field(default_factory=list)
    probe_s: float = 0.0

    @property
    def last(self) -> dict[str, float]:
        """The last call's metrics (the D learner's status figures)."""
        return self.per_call[-1] if self.per_call else {}

    @property
    def merged(self) -> dict[str, float]:
        """Every call's metrics, later calls overriding (the sync loop's step record)."""
        out: dict[str, float] = {}
        for m in self.per_call:
            out.update(m)
        return out


def d_steps(updater: DiscriminatorUpdater, batch: PairBatch, *, calls: int,
            probes: Optional[Probes] = None) -> DSteps:
    """`calls` D step calls on `batch`, each followed by the probes when they are due (their own RNG)."""
    done = DSteps()
    if probes is not None and calls > 0:
        t0 = time.monotonic()
        probes.before_step(updater, batch)
        done.probe_s += time.monotonic() - t0
    for _ in range(calls):
        done.per_call.append(updater.step(batch))
        if probes is not None:
            t0 = time.monotonic()
            probes.after_step(updater, batch)
            done.probe_s += time.monotonic() - t0
    return done
