"""The metric declaration machinery: roles, `MetricSpec`, the private registry and `_declare`.

Why separate from the catalogue: this module holds the rules every metric obeys (naming, units, the common
labels) and the one `CollectorRegistry`; `catalogue.py` is only the list of declarations, so adding a metric
never means reading the machinery, and the machinery can be read without 60 declarations in the way.

Registry design: one `CollectorRegistry` per process, `REGISTRY` below, with module-level metric singletons.
It is private (not `prometheus_client.REGISTRY`) so that a metric created elsewhere by mistake is not exported
silently, and tests can read exactly what a scrape would see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector

Role = Literal["teacher-server", "teacher-actor", "student-actor", "feeder", "d-learner", "student-learner"]
Kind = Literal["counter", "gauge", "histogram"]

ROLES: tuple[Role, ...] = ("teacher-server", "teacher-actor", "student-actor", "feeder", "d-learner", "student-learner")
COMMON_LABELS: tuple[str, ...] = ("role", "actor_id")

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
PlatformCollector(registry=REGISTRY)


@dataclass(frozen=True)
class MetricSpec:
    """One declared metric: what the docs table shows and what the dashboard test checks against."""

    name: str  # full exposition name; counters end in `_total`
    kind: Kind
    help: str
    group: str
    roles: tuple[Role, ...]
    labels: tuple[str, ...] = ()  # beyond COMMON_LABELS
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # enumerated label values, pre-initialised
    buckets: Optional[tuple[float, ...]] = None
    common: bool = True  # carries COMMON_LABELS (GPU series carry only `device`: a GPU belongs to a process, not a role)

    def label_names(self) -> tuple[str, ...]:
        """Every label name of the metric: the common `role`/`actor_id` (unless `common=False`) then its own."""
        return (COMMON_LABELS if self.common else ()) + self.labels

    def series(self) -> tuple[str, ...]:
        """Names of the time series a scrape shows for this metric."""
        if self.kind == "counter":
            return (self.name, self.name[: -len("_total")] + "_created")
        if self.kind == "histogram":
            return tuple(self.name + s for s in ("_bucket", "_sum", "_count", "_created"))
        return (self.name,)


SPECS: list[MetricSpec] = []  # in declaration order: the order of the docs tables
_METRICS: dict[str, Any] = {}  # name -> the prometheus_client object registered in REGISTRY


def _declare(kind: Kind, name: str, help: str, group: str, roles: Sequence[Role], labels: Sequence[str] = (),
             values: Optional[dict[str, tuple[str, ...]]] = None, buckets: Optional[Sequence[float]] = None) -> Any:
    """Check the naming rules, register the metric in `REGISTRY` and record its `MetricSpec` in `SPECS`."""
    spec = MetricSpec(name, kind, help, group, tuple(roles), tuple(labels), dict(values or {}),
                      tuple(buckets) if buckets else None)
    if not name.startswith("afd_"):
        raise ValueError(f"{name}: afd metrics start with afd_")
    if (kind == "counter") != name.endswith("_total"):
        raise ValueError(f"{name}: counters and only counters end in _total")
    all_labels = spec.label_names()
    if kind == "counter":
        metric: Any = Counter(name, help, all_labels, registry=REGISTRY)
    elif kind == "gauge":
        metric = Gauge(name, help, all_labels, registry=REGISTRY)
    else:
        metric = Histogram(name, help, all_labels, registry=REGISTRY, buckets=spec.buckets or Histogram.DEFAULT_BUCKETS)
    SPECS.append(spec)
    _METRICS[name] = metric
    return metric


def _c(name: str, help: str, group: str, roles: Sequence[Role], **kw: Any) -> Counter:
    return _declare("counter", name, help, group, roles, **kw)


def _g(name: str, help: str, group: str, roles: Sequence[Role], **kw: Any) -> Gauge:
    return _declare("gauge", name, help, group, roles, **kw)


def _h(name: str, help: str, group: str, roles: Sequence[Role], **kw: Any) -> Histogram:
    return _declare("histogram", name, help, group, roles, **kw)


def spec(name: str) -> MetricSpec:
    """The declaration of `name` (KeyError if undeclared)."""
    for s in SPECS:
        if s.name == name:
            return s
    raise KeyError(name)


def exported_series() -> dict[str, MetricSpec]:
    """Every series name a scrape of an afd role can show, mapped to its declaration."""
    return {series: s for s in SPECS for series in s.series()}
