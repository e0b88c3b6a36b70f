"""The Grafana dashboard and provisioning: every query names exported series; the JSON is provisionable.

No Grafana runs here (no image or package is reachable), so the checks mirror what Grafana's file
provisioning needs: the provider and datasource YAML schema (apiVersion 1), and a dashboard JSON model with
a uid, a schemaVersion and panels whose targets point at the provisioned datasource uid.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from afd_async import metrics as m

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "ops" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "afd.json"

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
                "le", "inf", "nan"}
# Series Prometheus itself attaches to every scrape target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _targets(dash: dict):
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (label matchers, grouping, ranges and functions removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors, incl. [$__rate_interval]
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\$\w+", "", e)  # dashboard variables
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tail = e[match.end():].lstrip()
        word = match.group(0)
        if tail.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(word)
    return names


def _exported_series() -> set[str]:
    series = set(m.exported_series())
    for family in m.REGISTRY.collect():  # process_* and python_info from the built-in collectors
        series.update(sample.name for sample in family.samples)
    return series | SCRAPE_SERIES


def test_metric_name_extraction():
    assert metric_names('histogram_quantile(0.95, sum by (le, phase) (rate(afd_x_bucket{a="b"}[$__rate_interval])))') == {"afd_x_bucket"}
    assert metric_names("max(afd_a) / on (role) group_left max(afd_b)") == {"afd_a", "afd_b"}


def test_every_query_names_only_exported_series():
    exported = _exported_series()
    seen = set()
    for panel, target in _targets(_dashboard()):
        names = metric_names(target["expr"])
        assert names, f"panel {panel['title']!r}: no series in {target['expr']!r}"
        unknown = names - exported
        assert not unknown, f"panel {panel['title']!r} queries undeclared series {sorted(unknown)}"
        seen |= names
    # the panels the issue asks for: throughput, quota, staleness, learning curves, errors
    for name in ["afd_teacher_actor_clips_total", "afd_student_learner_steps_total", "afd_quota_in_flight_jobs",
                 "afd_replay_pair_staleness_bucket", "afd_d_learner_loss", "afd_teacher_actor_errors_total",
                 "afd_teacher_actor_throttled_total", "afd_weight_sync_seconds_bucket", "afd_gpu_utilization_ratio"]:
        assert name in seen, f"dashboard lacks {name}"


def test_histograms_are_queried_through_buckets_or_sums():
    histograms = {s.name for s in m.SPECS if s.kind == "histogram"}
    for panel, target in _targets(_dashboard()):
        assert not metric_names(target["expr"]) & histograms, f"panel {panel['title']!r}: query a histogram's _bucket"


def test_datasource_provisioning_has_the_fixed_uid():
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["access"] == "proxy" and ds["url"]
    for panel, target in _targets(_dashboard()):
        assert panel["datasource"] == {"type": "prometheus", "uid": ds["uid"]}, panel["title"]
        assert target["datasource"]["uid"] == ds["uid"], panel["title"]


def test_dashboard_provider_points_at_the_mounted_folder():
    doc = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "afd.yml").read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["name"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./ops/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./ops/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_dashboard_json_model_is_provisionable():
    dash = _dashboard()
    assert isinstance(dash.get("uid"), str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"])
    assert isinstance(dash.get("title"), str) and dash["title"]
    assert isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36
    assert "id" not in dash or dash["id"] is None, "provisioned dashboards must not carry a database id"
    assert set(dash["time"]) == {"from", "to"}
    assert isinstance(dash["templating"]["list"], list) and isinstance(dash["annotations"]["list"], list)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dash["panels"]:
        gp = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(gp) and 0 <= gp["x"] and gp["x"] + gp["w"] <= 24, panel["title"]
        assert panel["type"] in {"row", "timeseries", "stat", "gauge", "bargauge", "table"}, panel["type"]
        if panel["type"] == "row":
            continue
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
