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


# ------------------------------------------------------------------------------------------------------------
# The real roles: every `afd <role>` process of a small run (private Redis, as `afd run` starts them), each on
# a metrics port chosen here, scraped by a real Prometheus; the key series of each role exist and move.

ROLE_SERIES = {  # role -> a counter that must increase while the run goes
    "teacher-actor": "afd_teacher_actor_clips_total",
    "student-actor": "afd_student_actor_rollouts_total",
    "feeder": "afd_replay_pairs_read_total",
    "d-learner": "afd_d_learner_steps_total",
    "student-learner": "afd_student_learner_steps_total",
    "teacher-server": "afd_teacher_server_jobs_total",
}


def _start_prometheus(tmp_path: Path, targets: dict[str, int]) -> tuple[str, subprocess.Popen, Path]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the `prometheus` binary is missing: run `make setup` (installs Debian's prometheus package)")
    jobs = "".join(f"""
          - job_name: {role}
            static_configs:
              - targets: ["127.0.0.1:{port}"]""" for role, port in targets.items())
    config = tmp_path / "prometheus.yml"
    config.write_text(textwrap.dedent("""
        global:
          scrape_interval: 1s
          scrape_timeout: 900ms
        scrape_configs:""") + jobs + "\n")
    log = tmp_path / "prometheus.log"
    port = _free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    return f"http://127.0.0.1:{port}", proc, log


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_prometheus_scrapes_real_role_processes(tmp_path):
    from afd_async.config import load_config
    from afd_async.launch.run import ROLE_ORDER, reserve_port, role_overrides
    from afd_async.launch.supervisor import Supervisor
    from afd_async.store.redis_server import RedisServer

    # A run long enough to be watched (the roles are stopped once the checks pass); the hash text encoder
    # spares every role the sentence model's start-up.
    user = ["experiment=smoke", "train.steps=400", "text.kind=hash"]
    cfg = load_config(user)
    out = tmp_path / "run"
    taken: set[int] = set()
    ports = {role: reserve_port(exclude=taken) for role in ROLE_ORDER}
    env = {**__import__("os").environ, "AFD_TEACHER_API_KEY": "test-only-key", "HF_HUB_OFFLINE": "1"}
    with RedisServer(data_dir=str(tmp_path / "redis")) as redis_srv, Supervisor(tmp_path / "logs", base_env=env) as sup:
        overrides = [o for o in role_overrides(cfg, redis_srv.port, out, out / "text_cache", taken=taken)
                     if not o.startswith("cluster.metrics_port=")]
        for role in ROLE_ORDER:
            sup.start(role, role, [*user, *overrides, f"cluster.metrics_port={ports[role]}"],
                      env={"AFD_ACTOR_ID": f"{role}-0"})
        base, proc, log = _start_prometheus(tmp_path, ports)
        try:
            def live(what: str, pred, timeout_s: float = 90):
                sup.check()  # a role that died fails here, with its log tail
                return _wait(lambda: (sup.check(), pred())[1], timeout_s, what, proc, log)

            def value(expr: str) -> float:
                result = _query(base, expr)
                return float(result[0]["value"][1]) if result else float("nan")

            live("prometheus ready", lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200, 60)
            for role in ROLE_ORDER:
                live(f"{role} up", lambda r=role: value(f'up{{job="{r}"}}') == 1)
            firsts = {}
            for role, series in ROLE_SERIES.items():
                expr = f'sum({series}{{job="{role}",role="{role}"}})'
                firsts[role] = live(f"{series} > 0", lambda e=expr: (v := value(e)) > 0 and v)
            for role, series in ROLE_SERIES.items():
                expr = f'sum({series}{{job="{role}"}})'
                live(f"{series} moves past {firsts[role]}", lambda e=expr, f=firsts[role]: (v := value(e)) > f and v)
            # the learning curves and versions that the dashboard plots
            assert value('afd_student_learner_version{job="student-learner"}') >= 1
            live("D accuracy reported", lambda: value('count(afd_d_learner_accuracy_ratio{job="d-learner"})') == 1)
            live("weights reach the student actor", lambda: value('afd_student_actor_policy_version') >= 1)
            live("a positive step rate", lambda: value('rate(afd_student_learner_steps_total[10s])') > 0)
            assert value('count(afd_role_info)') == len(ROLE_ORDER)
            assert value('sum(process_resident_memory_bytes{job="student-learner"})') > 0
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
