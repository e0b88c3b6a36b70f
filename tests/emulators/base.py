"""Emulator plumbing: a uvicorn server in a thread, a job table, fault injection.

`Emulator` subclasses add the provider's routes and wire formats. Shared knobs:

- `inject(route, status, body, headers)`: the next request to `route` ("create",
  "poll", "list", "cancel", "file") gets this response instead.
- `create_delay_s`: the create handler makes the job, then waits before it
  answers, so a client with a shorter timeout sees an ambiguous submit.
- `max_inflight`: a real concurrency cap on non-terminal jobs.
- `polls_to_finish`: polls before a job succeeds (queued → running → done).
- `expire_results`: result files answer as the provider does once expired.
- prompts containing `REJECT` fail at generation with the provider's
  content-policy code.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 8


@dataclass
class Job:
    id: str
    prompt: str
    model: str
    body: dict[str, Any]
    created_at: float = field(default_factory=time.time)
    polls: int = 0
    state: str = "queued"  # queued | running | succeeded | failed | cancelled
    reject: bool = False

    @property
    def terminal(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")


class ServedApp:
    """Serve an ASGI app on 127.0.0.1:<free port> in a daemon thread; a context manager."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> "ServedApp":
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:  # readiness: uvicorn flips this once it listens
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("emulator did not start")
            self._thread.join(0.005)
        r = httpx.get(f"{self.url}/__health", timeout=5.0)
        if r.status_code != 200:
            raise RuntimeError(f"emulator health check failed: {r.status_code}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10.0)
        self._sock.close()


class Emulator:
    """Base: provider subclasses add routes via `routes()` and wire formats."""

    def __init__(self, *, api_key: str = "test-key-0123456789") -> None:
        self.api_key = api_key
        self.jobs: dict[str, Job] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._ids = itertools.count(1)
        self.reset()
        self.app = Starlette(routes=[Route("/__health", self._health)] + self.routes())
        # Result files live on another origin, as on a CDN: adapters must not send credentials there.
        self.cdn = Starlette(routes=[Route("/__health", self._health), Route("/files/{job_id}.mp4", self._file)])
        self._served: Optional[ServedApp] = None
        self._cdn: Optional[ServedApp] = None

    def reset(self) -> None:
        self.jobs.clear()
        self.requests.clear()
        self.faults: dict[str, deque[Response]] = {}
        self.create_delay_s = 0.0
        self.max_inflight: Optional[int] = None
        self.polls_to_finish = 2
        self.expire_results = False
        self.file_bytes = FAKE_MP4

    # -- serving ------------------------------------------------------------------------
    def __enter__(self) -> "Emulator":
        self._cdn = ServedApp(self.cdn).__enter__()
        self._served = ServedApp(self.app).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._served is not None and self._cdn is not None
        self._served.__exit__(*exc)
        self._cdn.__exit__(*exc)

    @property
    def url(self) -> str:
        assert self._served is not None
        return self._served.url

    @property
    def base_url(self) -> str:
        """The root an adapter's `base_url` points at; providers with a path prefix override it."""
        return self.url

    def file_url(self, job: Job) -> str:
        assert self._cdn is not None
        return f"{self._cdn.url}/files/{job.id}.mp4?X-Amz-Signature=sig-{job.id}"

    # -- hooks for subclasses ----------------------------------------------------------------
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def expired_file_response(self) -> Response:
        return Response(b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", status_code=403)

    # -- shared behaviour --------------------------------------------------------------------
    def inject(self, route: str, status: int, body: Any = None, headers: Optional[dict[str, str]] = None) -> None:
        resp = JSONResponse(body, status_code=status, headers=headers) if body is not None else Response(b"", status_code=status, headers=headers)
        self.faults.setdefault(route, deque()).append(resp)

    def fault(self, route: str, request: Request) -> Optional[Response]:
        self.requests.append((request.method, request.url.path, dict(request.headers)))
        q = self.faults.get(route)
        return q.popleft() if q else None

    def inflight(self) -> int:
        return sum(not j.terminal for j in self.jobs.values())

    def new_id(self) -> str:
        return f"job-{next(self._ids):05d}"

    async def create_job(self, prompt: str, model: str, body: dict[str, Any]) -> Job:
        job = Job(id=self.new_id(), prompt=prompt, model=model, body=body, reject="REJECT" in prompt)
        self.jobs[job.id] = job
        if self.create_delay_s:
            await asyncio.sleep(self.create_delay_s)
        return job

    def advance(self, job: Job) -> Job:
        """One poll: queued → running → succeeded/failed after `polls_to_finish` polls."""
        if job.terminal:
            return job
        job.polls += 1
        if job.polls >= self.polls_to_finish:
            job.state = "failed" if job.reject else "succeeded"
        elif job.polls >= 1:
            job.state = "running"
        return job

    async def _health(self, request: Request) -> Response:
        return Response(b"ok")

    async def _file(self, request: Request) -> Response:
        if (f := self.fault("file", request)) is not None:
            return f
        if "authorization" in request.headers:  # credentials must never reach a CDN
            return Response(b"credentials sent to file host", status_code=400)
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return Response(b"", status_code=404)
        if self.expire_results:
            return self.expired_file_response()
        return Response(self.file_bytes, media_type="video/mp4")
