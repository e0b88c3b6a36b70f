"""afd_async.metrics: naming rules, several roles in one process, the HTTP server, the generated docs."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path

import pytest

from afd_async import metrics as m
from afd_async.teacher.contract import ErrorClass

REPO = Path(__file__).resolve().parents[2]
PER_REQUEST_LABELS = {"job_id", "pair_id", "prompt_id", "request_id", "prompt", "seed", "url", "trace_id"}


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


@pytest.fixture()
def server_port():
    port = m.start_metrics_server(0)
    yield port
    m.stop_metrics_servers()


def test_names_follow_prometheus_conventions():
    names = [s.name for s in m.SPECS]
    assert len(names) == len(set(names)), "a metric name is declared twice"
    for s in m.SPECS:
        assert re.fullmatch(r"afd_[a-z0-9_]+", s.name), s.name
        assert (s.kind == "counter") == s.name.endswith("_total"), s.name
        if s.kind == "histogram":
            assert s.name.endswith(("_seconds", "_bytes", "_staleness", "_advantage")), f"{s.name}: histogram without a unit"
        assert s.help and s.roles and set(s.roles) <= set(m.ROLES)
        assert not PER_REQUEST_LABELS & set(s.label_names()), f"{s.name}: per-request label"
        assert set(s.values) <= set(s.labels)


def test_every_role_and_required_quantity_is_declared():
    exported = {s.name for s in m.SPECS}
    for role in m.ROLES:
        assert any(role in s.roles for s in m.SPECS if s.name != "afd_role_info"), role
    for name in [
        "afd_teacher_actor_jobs_total", "afd_teacher_actor_errors_total", "afd_quota_in_flight_jobs",
        "afd_teacher_actor_jobs_in_flight", "afd_teacher_actor_throttled_total", "afd_teacher_actor_latency_seconds",
        "afd_student_actor_rollouts_total", "afd_student_actor_frames_total", "afd_student_actor_policy_version",
        "afd_replay_pair_staleness", "afd_replay_stream_length", "afd_replay_consumer_lag", "afd_replay_pairs_dropped_total",
        "afd_feeder_credits", "afd_d_learner_steps_total", "afd_student_learner_steps_total", "afd_d_learner_loss",
        "afd_student_learner_loss", "afd_d_learner_accuracy_ratio", "afd_d_learner_student_sigmoid_ratio",
        "afd_student_learner_advantage", "afd_weight_sync_seconds", "afd_weight_sync_bytes_total",
        "afd_gpu_utilization_ratio", "afd_gpu_memory_used_bytes",
    ]:
        assert name in exported, name
    assert set(m.spec("afd_teacher_actor_errors_total").values["error_class"]) == set(m.ERROR_CLASSES)
    assert list(m.ERROR_CLASSES) == [e.value for e in ErrorClass]  # the catalogue names every error class


def test_two_roles_in_one_process_differ_by_label_only(server_port):
    ta = m.bind("teacher-actor", "ta-test")
    fd = m.bind("feeder", "fd-test")
    ta(m.TEACHER_ACTOR_JOBS, state="submitted").inc(3)
    fd(m.REPLAY_DROPPED, reason="stale").inc()
    m.bind("teacher-actor", "ta-test")  # binding again is harmless (no duplicate registration)
    text = _scrape(server_port)
    assert 'afd_teacher_actor_jobs_total{actor_id="ta-test",role="teacher-actor",state="submitted"} 3.0' in text
    assert 'afd_replay_pairs_dropped_total{actor_id="fd-test",reason="stale",role="feeder"} 1.0' in text
    # pre-created at zero, so rate() sees the first increment and panels are never empty
    assert 'afd_teacher_actor_errors_total{actor_id="ta-test",error_class="auth",role="teacher-actor"} 0.0' in text
    assert 'afd_role_info{actor_id="fd-test",role="feeder"' in text
    assert "process_cpu_seconds_total" in text
    with pytest.raises(ValueError):
        m.bind("not-a-role")  # type: ignore[arg-type]


def test_port_tries_take_the_next_free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        try:
            with pytest.raises(OSError, match="no free metrics port"):
                m.start_metrics_server(busy, tries=1)
            port = m.start_metrics_server(busy, tries=5)
            assert busy < port < busy + 5
            assert "afd_role_info" in _scrape(port)
        finally:
            m.stop_metrics_servers()


def test_health_check_reads_the_port_file(tmp_path):
    pf = tmp_path / "port"
    assert m.main(["check", "--port-file", str(pf)]) == 1  # no file yet: not healthy
    port = m.start_metrics_server(0, port_file=str(pf))
    try:
        m.bind("feeder", "hc")
        assert int(pf.read_text()) == port
        assert m.main(["check", "--port-file", str(pf)]) == 0
    finally:
        m.stop_metrics_servers()
    assert m.main(["check", "--port", str(port), "--timeout", "0.5"]) == 1


def test_start_role_metrics_uses_the_port_file_from_the_environment(tmp_path, monkeypatch):
    pf = tmp_path / "port"
    monkeypatch.setenv("AFD_METRICS_PORT_FILE", str(pf))
    labels, port = m.start_role_metrics("d-learner", port=0, actor_id="dl-env")
    try:
        assert labels == m.RoleLabels("d-learner", "dl-env") and int(pf.read_text()) == port
        assert 'afd_d_learner_steps_total{actor_id="dl-env",role="d-learner"} 0.0' in _scrape(port)
    finally:
        m.stop_metrics_servers()


def test_gpu_collector_reports_only_with_a_device():
    import torch

    if not torch.cuda.is_available():
        assert list(m.GpuCollector().collect()) == []
        return
    x = torch.ones(1024, 1024, device="cuda")  # a process that uses its GPU
    families = {f.name: f for f in m.GpuCollector().collect()}
    assert {"afd_gpu_memory_used_bytes", "afd_gpu_memory_total_bytes", "afd_gpu_memory_allocated_bytes"} <= set(families)
    allocated = families["afd_gpu_memory_allocated_bytes"].samples[0]
    assert allocated.labels == {"device": str(x.device.index or 0)} and allocated.value >= x.numel() * 4
    total = families["afd_gpu_memory_total_bytes"].samples[0].value
    assert 0 < families["afd_gpu_memory_used_bytes"].samples[0].value <= total
    if "afd_gpu_utilization_ratio" in families:  # needs pynvml
        assert 0.0 <= families["afd_gpu_utilization_ratio"].samples[0].value <= 1.0


def test_docs_table_is_up_to_date():
    committed = (REPO / "docs" / "METRICS.md").read_text()
    assert committed == m.render_markdown(), "regenerate: python -m afd_async.metrics render > docs/METRICS.md"
    for s in m.SPECS:
        assert f"`{s.name}`" in committed
    readme = (REPO / "README.md").read_text()
    section = readme.split("<!-- metrics:begin -->")[1].split("<!-- metrics:end -->")[0]
    assert section.strip() == committed.split("\n", 1)[1].replace("## ", "### ").strip(), (
        "README's metrics table is stale: regenerate it from afd_async.metrics.render_markdown()")
