"""The D learner's probes off its critical path: the same probes, on frozen copies of D, on a thread.

    probes = BackgroundProbes(make_probe_monitor(...))        # the D learner's; `afd sync` keeps the monitor inline
    for batch:
        d_steps(updater, batch, calls=..., probes=probes)     # before_step / after_step: a copy of D when it is
                                                              # needed, then queued; the step call goes on
        publish D                                             # not delayed by a probe any more
    probes.finish(updater)                                    # every queued probe done, then the final D's

Why: a probe (every `train.d_probe_every` D step calls) scores the held-out set and its corruptions and, with
the embedded renderer, ranks the pooled student clips by their true error: about 1 s of CPU for the tiny
models, against a 0.6 s D step. Inline, it delayed D's publish, and the student learner, which at
`replay.d_staleness=0` needs the D of its own group, waited for it (measured on 2 cores, k = 2: student busy
0.82 with the probes, d_wait 0.15 of warm time, most of it at the steps after a probe; 0.93 with the probes off).

Exactness: the probes read D only through its scores (no grad, eval mode) and draw only from their own
generators (`d_probe_monitor.py`), so a copy of D taken where the inline probe would have run gives the same
records; the monitor itself is used from the worker thread only, in submission order, so its pooling
(`observe`, `before_step`'s held-out scores) sees the batches in the order the inline calls did. A probe
that raises is raised, as `ProbeFailed`, by the learner's next probe call or `finish`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
from typing import Any, Callable, Optional

import torch

from afd_async.eval.d_probes import DProbeResult
from afd_async.train.d_probe_monitor import DProbeMonitor

__all__ = ["BackgroundProbes", "ProbeFailed"]


class ProbeFailed(RuntimeError):
    """A background D probe raised; the cause is chained."""


class BackgroundProbes:
    """`DProbeMonitor`'s `before_step` / `after_step` / `finish`, run on one thread on copies of D.

    Args:
        monitor: the probes to run (used from the worker thread only, once handed over).
        max_pending: queued calls before `before_step` / `after_step` wait for the oldest (each may hold a copy
            of D and a batch: this bounds the memory when probing is slower than training).
    """

    def __init__(self, monitor: DProbeMonitor, max_pending: int = 8) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.monitor, self.max_pending = monitor, max_pending
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="d-probes")
        self._queued: collections.deque[concurrent.futures.Future] = collections.deque()

    def before_step(self, updater: Any, batch: Any) -> None:
        """Queue D's scores of `batch` before it trains on it (held-out ρ); nothing without an oracle."""
        if self.monitor.oracle is None or batch is None:
            return
        self._submit(self.monitor.before_step, _frozen(updater), batch)

    def after_step(self, updater: Any, batch: Any = None) -> None:
        """Queue the pooling of `batch` and, when `updater.calls` is a multiple of `every`, a probe of D as it is."""
        calls = int(updater.calls)
        d = _frozen(updater) if calls % self.monitor.every == 0 else None
        self._submit(self._after, d, calls, batch)

    def _after(self, d: Optional[torch.nn.Module], calls: int, batch: Any) -> None:
        self.monitor.observe(batch)
        if d is not None:
            self.monitor.probe(d, calls)

    def finish(self, updater: Any) -> Optional[DProbeResult]:
        """Wait for every queued probe, then probe the final D unless its last call was just probed (inline)."""
        self.flush()
        return self.monitor.finish(updater)

    def flush(self) -> None:
        """Wait for every queued call.

        Raises:
            ProbeFailed: one of them raised (raised once; the calls queued after it stay queued).
        """
        while self._queued:
            self._wait_oldest()

    def close(self) -> None:
        """Finish what is queued (raising its error), then stop the thread."""
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        while self._queued and (self._queued[0].done() or len(self._queued) >= self.max_pending):
            self._wait_oldest()  # a finished call's error surfaces here, on the learner's thread
        self._queued.append(self._pool.submit(fn, *args))

    def _wait_oldest(self) -> None:
        fut = self._queued.popleft()
        try:
            fut.result()
        except Exception as e:
            raise ProbeFailed(f"a D probe failed: {e}") from e


def _frozen(updater: Any) -> torch.nn.Module:
    """A copy of the D module (`updater.d`, or `updater` itself), grad off, as it is now."""
    d = updater.d if hasattr(updater, "d") else updater
    return copy.deepcopy(d).requires_grad_(False)
