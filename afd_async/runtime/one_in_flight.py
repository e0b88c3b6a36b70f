"""One background call at a time, its error raised on the learner's thread: the mechanism under the learners'
off-critical-path work (θ_old publishing, `background_publish.py`; checkpoint writes, `checkpoint_writer.py`).

At most one call is in flight, so the work never races itself and memory holds at most one extra snapshot;
a call that raised is never lost: its error is raised, as the owner's error type with the cause chained, by
the next `wait` or `close`. The thread is a `ThreadPoolExecutor`'s, which the interpreter joins at exit, so
a learner that dies of an exception still finishes the call in flight.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Callable, Optional

__all__ = ["OneInFlight"]


class OneInFlight:
    """Runs `fn(*args)` on one thread, one call at a time.

    Args:
        name: the thread's name prefix.
        error: raised (from the call's exception) by `wait` when the call failed.
        what: how an error names the call, e.g. "publishing weights version" (the call's label follows).
        busy_as: how a refused second `submit` describes the call in flight, e.g. "still being written".
    """

    def __init__(self, name: str, *, error: type[RuntimeError], what: str, busy_as: str = "still running") -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._error, self._what, self._busy_as = error, what, busy_as
        self._inflight: Optional[concurrent.futures.Future] = None
        self._label: object = None

    @property
    def busy(self) -> bool:
        """A call was submitted and not yet waited for (it may have finished meanwhile)."""
        return self._inflight is not None

    def submit(self, label: object, fn: Callable[..., Any], *args: Any) -> None:
        """Start `fn(*args)` on the thread.

        Raises:
            RuntimeError: a call is still in flight (`wait` for it first: never two at once).
        """
        if self._inflight is not None:
            raise RuntimeError(f"{self._what} {self._label} is {self._busy_as}; wait() for it first")
        self._label = label
        self._inflight = self._pool.submit(fn, *args)

    def wait(self) -> Any:
        """Block until the call in flight is done; its result, or None when none was in flight.

        Raises:
            the owner's `error`: the call raised (raised once; the worker is free again).
        """
        fut, self._inflight = self._inflight, None
        if fut is None:
            return None
        try:
            return fut.result()
        except Exception as e:
            raise self._error(f"{self._what} {self._label} failed: {e}") from e

    def close(self) -> None:
        """Finish the call in flight (raising its error), then stop the thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
