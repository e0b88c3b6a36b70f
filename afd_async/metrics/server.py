"""The per-role metrics ports and the HTTP exposition server that serves `REGISTRY` at `/metrics`.

Why ports are fixed per role: Prometheus scrapes each role at a known port (`ops/prometheus`); scaled replicas
that share one network namespace (host networking) take the next free port of their role's block of
`PORT_BLOCK`, and Prometheus scrapes the whole block.
"""

from __future__ import annotations

import os
import threading
from socketserver import ThreadingMixIn
from typing import Any, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from afd_async.metrics.declare import REGISTRY, Role
from afd_async.metrics.gpu import GpuCollector
from afd_async.metrics.labels import RoleLabels, bind

# Default metrics port of each role (`cluster.metrics_port` unset). Scaled replicas that share one network
# namespace (host networking) take the next free port of their role's block of 10 (`tries`).
DEFAULT_METRICS_PORTS: dict[Role, int] = {
    "teacher-server": 9101,  # not 9100: node_exporter's port on many hosts
    "teacher-actor": 9110,
    "student-actor": 9120,
    "feeder": 9130,
    "d-learner": 9140,
    "student-learner": 9150,
}
PORT_BLOCK = 10


def default_port(role: Role) -> int:
    """The metrics port `role` uses when `cluster.metrics_port` is unset (table in docs/METRICS.md)."""
    return DEFAULT_METRICS_PORTS[role]


def port_block(role: Role) -> tuple[int, int]:
    """First and last metrics port replicas of `role` may take under host networking (up to the next role's)."""
    base = DEFAULT_METRICS_PORTS[role]
    higher = [p for p in DEFAULT_METRICS_PORTS.values() if p > base]
    return base, min(min(higher, default=base + PORT_BLOCK), base + PORT_BLOCK) - 1


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds must not flood logs
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung scraper must not keep the process alive


_SERVERS: list[WSGIServer] = []
_GPU_COLLECTOR: Optional[GpuCollector] = None


def start_metrics_server(port: int, host: str = "127.0.0.1", *, tries: int = 1, port_file: Optional[str] = None) -> int:
    """Serve `REGISTRY` at `http://host:port/metrics` from a daemon thread; return the bound port.

    Args:
        port: 0 picks a free port (tests); otherwise the role's port.
        host: bind address: 127.0.0.1 by default, 0.0.0.0 in a compose bridge network so Prometheus can reach it.
        tries: try `port`, `port+1`, ... this many ports; scaled replicas sharing a host network take the next
            free one of their role's block (Prometheus scrapes the whole block).
        port_file: where to write the bound port for the container health check
            (`python -m afd_async.metrics check`); default `$AFD_METRICS_PORT_FILE`, if set.
    """
    global _GPU_COLLECTOR
    if _GPU_COLLECTOR is None:
        _GPU_COLLECTOR = GpuCollector()
        REGISTRY.register(_GPU_COLLECTOR)
    last_error: Optional[OSError] = None
    for candidate in range(port, port + max(1, tries)) if port else [0]:
        try:
            httpd = make_server(host, candidate, make_wsgi_app(REGISTRY), _ThreadingServer, handler_class=_QuietHandler)
            break
        except OSError as e:
            last_error = e
    else:
        raise OSError(f"no free metrics port in {port}..{port + tries - 1} on {host}: {last_error}")
    threading.Thread(target=httpd.serve_forever, name=f"metrics:{httpd.server_port}", daemon=True).start()
    _SERVERS.append(httpd)
    port_file = port_file or os.environ.get("AFD_METRICS_PORT_FILE")
    if port_file:
        with open(port_file, "w") as f:
            f.write(str(httpd.server_port))
    return httpd.server_port


def start_role_metrics(role: Role, *, port: Optional[int] = None, host: str = "127.0.0.1", tries: int = 1,
                       actor_id: Optional[str] = None) -> tuple[RoleLabels, int]:
    """What a role's entry point calls first: `bind(role)` + `start_metrics_server` on the role's port.

    Args mirror `cluster.metrics_port` (None: the role's default port), `cluster.host` and
    `cluster.metrics_port_tries`. Returns the role's labels and the bound port.
    """
    labels = bind(role, actor_id)
    return labels, start_metrics_server(default_port(role) if port is None else port, host, tries=tries)


def stop_metrics_servers() -> None:
    """Stop every server `start_metrics_server` started (tests; processes just exit)."""
    while _SERVERS:
        srv = _SERVERS.pop()
        srv.shutdown()
        srv.server_close()
