"""A role started by `afd run` stops when the launcher is gone.

Why: the launcher starts every role in its own session (so a Ctrl-C reaches
the launcher only, which then stops the roles in order). If the launcher itself
dies without that (SIGKILL, the OOM killer, a CI timeout), its roles would run
on forever: learners waiting on a private Redis that is gone, a teacher server
holding its port. The launcher puts its pid in `AFD_SUPERVISOR_PID`; each role
watches it and, once it is gone, sends itself SIGTERM, which every role already
handles as a graceful stop (finish or hand back the unit of work, ack nothing
unprocessed). A role still alive `grace_s` later exits hard. Roles started by
hand or by docker compose have no such variable and are not watched.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from typing import Optional

log = logging.getLogger(__name__)

SUPERVISOR_PID_ENV = "AFD_SUPERVISOR_PID"


def alive(pid: int) -> bool:
    """Whether a process with this pid exists. A dead launcher not yet reaped by its parent (a zombie) still
    counts as alive: the role notices once the launcher's parent (a shell, CI, init) reaps it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def watch_supervisor(env: Mapping[str, str] = os.environ, *, poll_s: float = 1.0,
                     grace_s: float = 120.0) -> Optional[threading.Thread]:
    """Start the watchdog thread when `AFD_SUPERVISOR_PID` is set; returns it (None: not watched)."""
    raw = env.get(SUPERVISOR_PID_ENV)
    if not raw:
        return None
    try:
        pid = int(raw)
    except ValueError:
        log.warning("%s=%r is not a pid; the launcher is not watched", SUPERVISOR_PID_ENV, raw)
        return None

    def run() -> None:
        wake = threading.Event()
        while alive(pid):
            wake.wait(poll_s)
        log.warning("launcher (pid %d) is gone: stopping this role (hard exit in %.0fs if it does not stop)", pid, grace_s)
        os.kill(os.getpid(), signal.SIGTERM)
        wake.wait(grace_s)
        log.error("role did not stop within %.0fs of its launcher's death: exiting", grace_s)
        os._exit(1)

    t = threading.Thread(target=run, name="afd-orphan-watch", daemon=True)
    t.start()
    return t


__all__ = ["SUPERVISOR_PID_ENV", "alive", "watch_supervisor"]
