"""Every Prometheus metric afd_async exports, declared once (DESIGN.md §1, STYLE.md "Metrics").

Why one package: the dashboard (`ops/grafana/dashboards/afd.json`), the alert queries and the table in
`docs/METRICS.md` are checked against these declarations, so a metric that is not declared here does not exist.
Callers import everything from `afd_async.metrics`; the modules below each hold one job:

- `declare`: roles, `MetricSpec`, the private `REGISTRY` and `_declare` (the naming rules);
- `catalogue`: the metric declarations themselves (and the GPU series' specs);
- `gpu`: `GpuCollector`, GPU series read from torch at scrape time;
- `labels`: `RoleLabels` and `bind` (which role and replica a series belongs to);
- `server`: per-role default ports and the HTTP exposition server;
- `cli`: `python -m afd_async.metrics render | check` (docs tables, container health check).

Naming: `afd_<component>_<quantity>_<unit>`, base units (seconds, bytes, ratio), `_total` for counters,
histograms for latencies. Every series carries the labels `role` (the `afd` command: `teacher-actor`, ...) and
`actor_id` (the replica within its role); other labels take a small, enumerated set of values, never a
per-request id.

Registry design: one `CollectorRegistry` per process, `REGISTRY`, with module-level metric singletons. A
process that plays several roles (the launcher's in-process mode, or a test that runs a teacher actor and a
feeder side by side) uses one `RoleLabels` per role, so the series differ by label and nothing is ever
registered twice. The registry is private (not `prometheus_client.REGISTRY`) so that a metric created
elsewhere by mistake is not exported silently, and tests can read exactly what a scrape would see.

Call order in a role's entry point:

    m, port = metrics.start_role_metrics("teacher-actor", port=cfg.cluster.metrics_port, host=cfg.cluster.host,
                                         tries=cfg.cluster.metrics_port_tries)   # bind() + start_metrics_server()
    m(metrics.TEACHER_ACTOR_JOBS, state="submitted").inc()
    with m(metrics.TEACHER_ACTOR_LATENCY, phase="end_to_end").time(): ...
"""

from __future__ import annotations

# Every public name of the catalogue is a declaration (metric objects, buckets, label value sets).
from afd_async.metrics.catalogue import *  # noqa: F401,F403
from afd_async.metrics.catalogue import _WS_VALUES  # noqa: F401
from afd_async.metrics.cli import _check, main, render_markdown  # noqa: F401
from afd_async.metrics.declare import (  # noqa: F401
    COMMON_LABELS, REGISTRY, ROLES, SPECS, Kind, MetricSpec, Role, _c, _declare, _g, _h, _METRICS, exported_series,
    spec,
)
from afd_async.metrics.gpu import GpuCollector  # noqa: F401
from afd_async.metrics.labels import RoleLabels, _package_version, bind, default_actor_id  # noqa: F401
from afd_async.metrics.server import (  # noqa: F401
    DEFAULT_METRICS_PORTS, PORT_BLOCK, _QuietHandler, _SERVERS, _ThreadingServer, default_port, port_block,
    start_metrics_server, start_role_metrics, stop_metrics_servers,
)
