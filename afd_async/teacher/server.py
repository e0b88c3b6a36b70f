"""The local teacher server: the OpenAI Videos API (`/v1/videos`) over a local renderer (DESIGN.md §3).

It speaks the API as the official `openai` SDK uses it (the SDK drives it
unmodified: tests/integration/test_sdk_openai.py; wire rules and their sources
in `server_wire`), and behaves like a paid provider so the gateway is
exercised for real: bearer auth, a per-key create-rate token bucket (429
`rate_limit` + Retry-After and `x-ratelimit-*` headers), a per-key in-flight
cap (429 `concurrency_limit`), a global render-queue cap (503 `overloaded`),
result files that expire (410), and faults on demand (`server_faults`).
Errors are `{"error": {"code", "type", "message", "param"}}`.

- `POST /v1/videos`, multipart/form-data (as the SDK sends) or JSON:
  `{prompt, model?, seconds?, size? "WxH"}` plus this server's `seed?` and
  `fps?` -> the Video object, `status: "queued"`; fields left out take the
  server's defaults (`create_app(default_*)`), which the job is rendered with.
  An `Idempotency-Key` header returns the existing job for a repeated key
  instead of creating (and charging) another.
- `GET /v1/videos/{id}` -> the Video object `{id, object: "video", model, status:
  queued|in_progress|completed|failed, progress, created_at, completed_at,
  expires_at, prompt, seconds: "4", size: "WxH", error, remixed_from_video_id, seed}`.
- `GET /v1/videos/{id}/content?variant=video|thumbnail|spritesheet` -> MP4, WebP
  or JPEG; 410 `expired` once `expires_at` (completion + `result_ttl_s`) has
  passed (the video stays `completed`); unknown variant 400.
- Webhooks (an extension, like Replicate's `webhook` create field): with
  `create_app(webhook_secret=...)` a create may carry `webhook=<url>`; when the job
  completes or fails the server POSTs a Standard-Webhooks signed `video.completed` /
  `video.failed` event with the Video object (`server_webhooks`).
- `DELETE /v1/videos/{id}` -> `{id, object: "video.deleted", deleted: true}`; the
  video is gone (404). A queued or rendering one is cancelled, then deleted
  (the API documents delete for finished videos only). There is no cancel route.
- `GET /v1/videos?after=&limit=&order=asc|desc` -> `{object: "list", data,
  first_id, last_id, has_more}`: the SDK's auto-pagination walks every video.
- `GET /v1/admin/stats` -> counters (creates, throttles by kind, jobs by
  outcome, injected faults) for benchmarks to compute throttle rates.
- `GET /v1/admin/jobs` -> `{data: [{id, prompt, seed, model, status, downloads}]}`,
  every job of the key with its content-fetch count (the fault ledger's source).

Jobs belong to the key that created them (others get 404). Keys are compared
in constant time and never logged or echoed. Start one with
`serve(create_app(backend=physics_backend(), api_keys=["k"], ...))`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, AsyncIterator, Callable, Optional, Sequence

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from afd_async.config.credentials import Secret
from afd_async.teacher.server_app import Handlers, auth_digests
from afd_async.teacher.server_backends import diffusers_backend, frames_to_clip, physics_backend
from afd_async.teacher.server_faults import FaultConfig, FaultInjector
from afd_async.teacher.server_jobs import JobQueue, TokenBucket
from afd_async.teacher.server_webhooks import WebhookSender
from afd_async.teacher.server_wire import VideoDefaults
from afd_async.video.clip import Clip

__all__ = [
    "FaultConfig",
    "ServerHandle",
    "create_app",
    "diffusers_backend",
    "frames_to_clip",
    "physics_backend",
    "serve",
]


def create_app(
    *,
    backend: Callable[[str, int, dict], Clip],
    api_keys: Sequence[str],
    create_rate_per_min: float,
    max_in_flight: int,
    max_queued: int,
    render_latency_s: float,
    faults: FaultConfig,
    result_ttl_s: float,
    create_burst: Optional[float] = None,
    render_workers: int = 2,
    default_model: str = "sora-2",
    default_seconds: float = 4.0,
    default_size: str = "720x1280",
    webhook_secret: "Optional[str | Secret]" = None,
) -> Starlette:
    """Build the ASGI app (no sockets yet; `serve` runs it).

    Args:
        backend: `(prompt, seed, params) -> Clip` (see `server_backends`).
        api_keys: accepted bearer keys; each key is one account with its own limits.
        create_rate_per_min: creates per minute per key (token bucket refill rate).
        max_in_flight: queued + in-progress jobs allowed per key (429 `concurrency_limit`).
        max_queued: jobs waiting for a render worker, all keys together (503 `overloaded`).
        render_latency_s: least time a job takes, like a real provider's render time.
        faults: fault probabilities and seed.
        result_ttl_s: how long a finished video can be downloaded (then 410).
        create_burst: tokens a key may bank; default one second's worth, at least 1.
        render_workers: render threads (jobs rendering at once, all keys together).
        default_model, default_seconds, default_size: what a create that leaves the field
            out gets, shown in the Video object and passed to the backend (the API's
            defaults: `sora-2`, 4 s, `720x1280`; `afd teacher-server` uses its renderer's).

    Raises:
        ValueError: a limit out of range or a bad default (the message says which).
    """
    if not api_keys or any(not k for k in api_keys):
        raise ValueError("create_app needs at least one non-empty API key")
    if max_in_flight < 1 or max_queued < 0 or render_workers < 1:
        raise ValueError("need max_in_flight >= 1, max_queued >= 0, render_workers >= 1")
    if render_latency_s < 0 or result_ttl_s <= 0 or create_rate_per_min <= 0:
        raise ValueError("need render_latency_s >= 0, result_ttl_s > 0, create_rate_per_min > 0")
    burst = create_burst if create_burst is not None else max(1.0, create_rate_per_min / 60.0)
    queue = JobQueue(backend=backend, injector=FaultInjector(faults), render_workers=render_workers,
                     render_latency_s=render_latency_s, result_ttl_s=result_ttl_s)
    sender = WebhookSender(webhook_secret) if webhook_secret else None
    if sender is not None:
        queue.on_end = sender.hook(queue)
    handlers = Handlers(
        queue=queue,
        keys=auth_digests(api_keys),
        buckets=[TokenBucket(create_rate_per_min, burst) for _ in api_keys],
        rate_per_min=create_rate_per_min,
        max_in_flight=max_in_flight,
        max_queued=max_queued,
        defaults=VideoDefaults(model=default_model, seconds=float(default_seconds), size=default_size),
        webhooks=sender is not None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        queue.close()

    routes = [
        Route("/v1/videos", handlers.create, methods=["POST"]),
        Route("/v1/videos", handlers.list_jobs, methods=["GET"]),
        Route("/v1/videos/{video_id}", handlers.retrieve, methods=["GET"]),
        Route("/v1/videos/{video_id}", handlers.delete, methods=["DELETE"]),
        Route("/v1/videos/{video_id}/content", handlers.content, methods=["GET"]),
        Route("/v1/admin/stats", handlers.stats, methods=["GET"]),
        Route("/v1/admin/jobs", handlers.job_ledger, methods=["GET"]),
        Route("/healthz", _healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.jobs = queue
    app.state.webhooks = sender
    return app


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class ServerHandle:
    """A uvicorn server running in a background thread; a context manager.

    Attributes:
        url: `http://host:port`, no trailing slash.
        port: the bound port (the OS's choice when 0 was asked).
    """

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int) -> None:
        self._server, self._thread = server, thread
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to exit (hung responses are cut after 1 s) and join its thread."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout_s)

    def wait(self) -> None:
        """Block until the server stops (for a CLI entry point)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(app: Starlette, host: str = "127.0.0.1", port: int = 0, *, start_timeout_s: float = 30.0) -> ServerHandle:
    """Run `app` with uvicorn in a daemon thread and return once it accepts connections.

    Waits on uvicorn's own `started` flag (set after the socket is bound and the
    lifespan started), not a fixed sleep; a start-up failure (port in use)
    raises instead of hanging.

    Raises:
        RuntimeError: the server did not start within `start_timeout_s`.
    """
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)

    def run() -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits on a bind failure; the wait below reports it
            server.run()

    thread = threading.Thread(target=run, name=f"teacher-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"teacher server failed to start on {host}:{port} (see the log)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"teacher server did not start within {start_timeout_s} s")
        thread.join(0.01)  # wakes early if the thread dies
    bound = port
    for srv in server.servers:
        for sock in srv.sockets:
            bound = int(sock.getsockname()[1])
    return ServerHandle(server, thread, host, bound)

