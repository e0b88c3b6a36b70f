"""A real Prometheus server scrapes a process that serves afd_async.metrics; the series exist and move.

Runs Debian's `prometheus` binary (installed by `make setup`) on a free loopback port against a child
process that binds two roles, starts the metrics server and increments counters; everything is checked
through Prometheus's HTTP API, which is what Grafana and the compose smoke test read.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.prometheus

CHILD = textwrap.dedent("""
    import sys, time
    from afd_async import metrics as m
    port = m.start_metrics_server(0, "127.0.0.1")
    print(port, flush=True)
    ta = m.bind("teacher-actor", "ta-0")
    sl = m.bind("student-learner", "sl-0")
    step = 0
    while True:
        step += 1
        ta(m.TEACHER_ACTOR_CLIPS).inc()
        ta(m.TEACHER_ACTOR_LATENCY, phase="end_to_end").observe(0.2 + 0.01 * (step % 7))
        ta(m.QUOTA_IN_FLIGHT).set(step % 4)
        sl(m.S_STEPS).inc()
        sl(m.S_VERSION).set(step)
        sl(m.S_LOSS, term="total").set(1.0 / step)
        sl.beat()
        time.sleep(0.1)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _wait(pred, timeout_s: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            last = pred()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what} (last: {last!r}):\n{log.read_text()[-2000:]}")


@pytest.fixture()
def role_process():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.isdigit(), f"metrics child did not report a port: {line!r}"
        yield int(line)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def prometheus(tmp_path, role_process):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the `prometheus` binary is missing: run `make setup` (installs Debian's prometheus package)")
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(textwrap.dedent(f"""
        global:
          scrape_interval: 1s
          scrape_timeout: 900ms
        scrape_configs:
          - job_name: afd-test
            static_configs:
              - targets: ["127.0.0.1:{role_process}"]
    """))
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200, 60, "prometheus ready", proc, log)
        yield base, proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_prometheus_scrapes_the_role_series_and_they_move(prometheus):
    base, proc, log = prometheus
    _wait(lambda: [r for r in _query(base, 'up{job="afd-test"}') if r["value"][1] == "1"], 30, "target up", proc, log)

    def value(expr: str) -> float:
        result = _query(base, expr)
        return float(result[0]["value"][1]) if result else float("nan")

    first = _wait(lambda: value('afd_student_learner_steps_total{role="student-learner",actor_id="sl-0"}') > 0
                  and value('afd_student_learner_steps_total{actor_id="sl-0"}'), 30, "steps scraped", proc, log)
    later = _wait(lambda: (v := value('afd_student_learner_steps_total{actor_id="sl-0"}')) > first and v,
                  30, "steps increase", proc, log)
    assert later > first
    assert value('afd_teacher_actor_clips_total{role="teacher-actor",actor_id="ta-0"}') > 0
    assert value('afd_student_learner_version{actor_id="sl-0"}') > 0
    _wait(lambda: value('rate(afd_teacher_actor_clips_total{actor_id="ta-0"}[5s])') > 0, 30, "a positive rate", proc, log)
    assert value('histogram_quantile(0.5, sum by (le) (afd_teacher_actor_latency_seconds_bucket{phase="end_to_end"}))') > 0
    # pre-created series exist at zero; role info counts the roles in the process
    assert value('afd_teacher_actor_errors_total{error_class="auth"}') == 0
    assert value('count(afd_role_info{job="afd-test"})') == 2
    assert value('process_resident_memory_bytes{job="afd-test"}') > 0
