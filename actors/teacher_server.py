"""`afd teacher-server`: the local teacher server as a process (compose config, build, serve).

Stops cleanly on SIGTERM/SIGINT: the listening socket closes, hung responses
are cut after a second, pending renders are cancelled. Needs
`AFD_TEACHER_API_KEY` (or `_FILE`): the server never runs without auth.
"""

from __future__ import annotations

import logging
import signal
import threading

from afd_async.config.root import RootConfig

log = logging.getLogger("afd.teacher-server")


def main(cfg: RootConfig) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (2: no API key)."""
    from afd_async import metrics
    from afd_async.config.credentials import CredentialError
    from afd_async.teacher.server_role import start_teacher_server

    c = cfg.cluster
    m, mport = metrics.start_role_metrics("teacher-server", port=c.metrics_port, host=c.host, tries=c.metrics_port_tries)
    try:
        handle, sampler_stop = start_teacher_server(cfg, metrics=m)
    except CredentialError as e:
        log.error("cannot start the teacher server: %s", e)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"teacher-server listening on {handle.url} (metrics :{mport})", flush=True)
    while not stop.wait(1.0):
        m.beat()
    log.info("teacher server stopping")
    sampler_stop.set()
    handle.stop()
    return 0
