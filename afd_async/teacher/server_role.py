"""The `afd teacher-server` role: the local teacher server built from config, with metrics.

    handle, stop = start_teacher_server(cfg, metrics=m)   # serving on cfg.cluster.host:teacher_server_port
    stop.wait()                                           # SIGTERM/SIGINT set it
    handle.stop()

Auth is always on: the API keys come from `AFD_TEACHER_API_KEY(_FILE)`
(`credentials.load_secret`); a server without a key would teach every client
to run keyless, which no real provider allows. Several keys (accounts) may be
given in one variable separated by commas.

Metrics: an ASGI wrapper counts requests by route and status code; a sampler
thread reads the app's own counters (`/v1/admin/stats`' source) every second
and advances the declared `afd_teacher_server_*` series, so the server's code
needs no Prometheus calls.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from afd_async import metrics as M
from afd_async.config.credentials import CredentialError, Secret, load_secret, load_webhook_secret

if TYPE_CHECKING:
    from afd_async.config.root import RootConfig
    from afd_async.metrics import RoleLabels
    from afd_async.teacher.server import ServerHandle

log = logging.getLogger(__name__)

_ROUTES = (  # (method or "*", path regex, route label): a small fixed label set, never an id
    ("POST", re.compile(r"^/v1/videos/?$"), "create"),
    ("GET", re.compile(r"^/v1/videos/?$"), "list"),
    ("*", re.compile(r"^/v1/videos/[^/]+/content$"), "content"),
    ("DELETE", re.compile(r"^/v1/videos/[^/]+$"), "delete"),
    ("*", re.compile(r"^/v1/videos/[^/]+$"), "retrieve"),
    ("*", re.compile(r"^/v1/admin/stats$"), "stats"),
    ("*", re.compile(r"^/healthz$"), "healthz"),
)


def route_label(method: str, path: str) -> str:
    """The `route` label of a request (`other` for anything unknown)."""
    for m, rx, label in _ROUTES:
        if (m == "*" or m == method) and rx.match(path):
            return label
    return "other"


def server_api_keys(env: Optional[dict[str, str]] = None) -> list[Secret]:
    """The accepted keys from `AFD_TEACHER_API_KEY(_FILE)` (comma-separated for several accounts).

    Raises:
        CredentialError: no key is set (the server never runs without auth).
    """
    secret = load_secret("AFD_TEACHER_API_KEY", env=env, required=True)
    assert secret is not None
    keys = [Secret(k.strip()) for k in secret.reveal().split(",") if k.strip()]
    if not keys:
        raise CredentialError("AFD_TEACHER_API_KEY holds no key")
    return keys


def build_backend(cfg: "RootConfig") -> Callable[[str, int, dict], Any]:
    """The render backend named by `teacher.server.backend` (physics: the renderer block's defaults)."""
    # deferred: the server app (FastAPI, PyAV, PIL) loads only in the server process
    from afd_async.teacher.server import diffusers_backend, physics_backend

    s, r = cfg.teacher.server, cfg.teacher.renderer
    if s.backend == "diffusers":
        assert s.diffusers_path is not None
        return diffusers_backend(s.diffusers_path, height=r.height, width=r.width, fps=r.fps, seconds=r.seconds,
                                 num_inference_steps=s.diffusers_steps, device=s.diffusers_device,
                                 dtype=s.diffusers_dtype)
    return physics_backend(height=r.height, width=r.width, fps=r.fps, seconds=r.seconds)


class _RequestMetrics:
    """ASGI wrapper: `afd_teacher_server_requests_total{route, code}`."""

    def __init__(self, app: Any, metrics: "RoleLabels") -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        route = route_label(scope.get("method", ""), scope.get("path", ""))

        async def counting_send(message: dict) -> None:
            if message.get("type") == "http.response.start":
                self.metrics(M.TEACHER_SERVER_REQUESTS, route=route, code=str(message.get("status", 0))).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


def _sample_forever(app: Any, metrics: "RoleLabels", stop: threading.Event, period_s: float = 1.0) -> None:
    """Advance the server's counters/gauges from the app's own state until `stop`."""
    queue = app.state.jobs
    handlers = app.state.handlers
    seen: dict[tuple[str, str], float] = {}
    peak = 0

    def advance(metric: Any, key: tuple[str, str], value: float, **labels: str) -> None:
        delta = value - seen.get(key, 0.0)
        if delta > 0:
            metrics(metric, **labels).inc(delta)
        seen[key] = value

    while True:
        with queue.lock:
            running = queue.active_count()
            counts = dict(queue.counts)
            faults = dict(queue.injector.injected)
            throttled = dict(handlers.counters["throttled"])
            accepted = handlers.counters["creates_accepted"]
        peak = max(peak, running)
        metrics(M.TEACHER_SERVER_RUNNING).set(running)
        metrics(M.TEACHER_SERVER_RUNNING_PEAK).set(peak)
        advance(M.TEACHER_SERVER_JOBS, ("jobs", "queued"), accepted, state="queued")
        for ours, theirs in (("succeeded", "completed"), ("failed", "failed"), ("cancelled", "cancelled"),
                             ("expired", "expired")):
            advance(M.TEACHER_SERVER_JOBS, ("jobs", ours), counts.get(theirs, 0), state=ours)
        advance(M.TEACHER_SERVER_THROTTLED, ("thr", "rate"), throttled.get("rate_limit", 0), reason="rate")
        advance(M.TEACHER_SERVER_THROTTLED, ("thr", "concurrency"), throttled.get("concurrency_limit", 0),
                reason="concurrency")
        for kind, n in faults.items():
            advance(M.TEACHER_SERVER_FAULTS, ("fault", kind), n, kind=kind)
        if stop.wait(period_s):
            return


def start_teacher_server(cfg: "RootConfig", *, metrics: Optional["RoleLabels"] = None,
                         port: Optional[int] = None) -> tuple["ServerHandle", threading.Event]:
    """Build the app from `cfg.teacher.server` and serve it on `cluster.host:teacher_server_port`.

    A create that gives no `size` or `seconds` gets the renderer's (`teacher.renderer`),
    so the Video object names what is rendered.

    Returns the running handle and an event that stops the metrics sampler
    (set it, then `handle.stop()`).

    Raises:
        CredentialError: no API key configured.
    """
    # deferred: the server app (FastAPI, PyAV, PIL) loads only in the server process
    from afd_async.teacher.server import FaultConfig, create_app, serve

    s, r = cfg.teacher.server, cfg.teacher.renderer
    keys = server_api_keys()
    app = create_app(backend=build_backend(cfg), api_keys=[k.reveal() for k in keys],
                     create_rate_per_min=s.create_rate_per_min, max_in_flight=s.max_in_flight,
                     max_queued=s.max_queued, render_latency_s=s.render_latency_s,
                     faults=FaultConfig(**s.faults.as_kwargs()), result_ttl_s=s.result_ttl_s,
                     create_burst=s.create_burst, render_workers=s.render_workers,
                     default_seconds=r.seconds, default_size=f"{r.width}x{r.height}",
                     webhook_secret=load_webhook_secret())
    stop = threading.Event()
    served: Any = app
    if metrics is not None:
        served = _RequestMetrics(app, metrics)
        app.state.handlers = _find_handlers(app)
        threading.Thread(target=_sample_forever, args=(app, metrics, stop), name="teacher-server-metrics",
                         daemon=True).start()
    handle = serve(served, cfg.cluster.host, cfg.cluster.teacher_server_port if port is None else port)
    log.info("teacher server on %s (%s backend, %d key(s), %.0f creates/min, %d in flight per key)",
             handle.url, s.backend, len(keys), s.create_rate_per_min, s.max_in_flight)
    return handle, stop


def _find_handlers(app: Any) -> Any:
    """The `Handlers` object behind the routes (its bound `create` method names it)."""
    for route in app.routes:
        owner = getattr(getattr(route, "endpoint", None), "__self__", None)
        if owner is not None and hasattr(owner, "counters"):
            return owner
    raise RuntimeError("teacher server app has no Handlers routes")
