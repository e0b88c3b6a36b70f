"""A role started by `afd run` stops when its launcher dies without stopping it (`launch/orphan.py`)."""

from __future__ import annotations

import signal
import subprocess
import sys

from test_teacher_actor import spawn, wait_serving

from afd_async.launch.orphan import SUPERVISOR_PID_ENV
from afd_async.store.redis_server import free_port


def test_a_role_stops_gracefully_once_its_launcher_is_killed(tmp_path):
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # stands in for `afd run`
    port = free_port()
    log = tmp_path / "server.log"
    server = spawn("teacher-server", [f"cluster.teacher_server_port={port}", "cluster.metrics_port=0"], log,
                   **{SUPERVISOR_PID_ENV: str(launcher.pid)})
    try:
        wait_serving(server, port, log)
        assert server.poll() is None  # alive while its launcher is
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(10)
        assert server.wait(30) == 0, log.read_text()  # a graceful stop (SIGTERM to itself), not the hard exit
        assert "launcher (pid %d) is gone" % launcher.pid in log.read_text()
    finally:
        for p in (server, launcher):
            if p.poll() is None:
                p.kill()
                p.wait(10)


def test_a_role_without_a_launcher_is_not_watched(tmp_path):
    from afd_async.launch.orphan import watch_supervisor

    assert watch_supervisor({}) is None
    assert watch_supervisor({SUPERVISOR_PID_ENV: "not-a-pid"}) is None
