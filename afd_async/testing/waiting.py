"""Wait for a condition in a test: poll it against a deadline, never sleep a guessed time.

Why: a sleep that is long enough on an idle machine is too short on a loaded one (issue 14.4); a
deadline that only bounds a poll costs nothing when the condition comes early.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


def wait_until(cond: Callable[[], bool], timeout_s: float = 10.0, *, what: str = "condition",
               interval_s: float = 0.005) -> None:
    """Return once `cond()` is true; raise AssertionError naming `what` if it is not by `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met before the deadline ({timeout_s:g}s)")
        pause.wait(interval_s)
