"""The teacher actor's callback receiver: a job's completion seen the moment the provider reports it.

Why: a quota slot freed at the provider is otherwise seen only at the next
poll, and every millisecond between the render's end and the next create is
paid quota left unused (benchmarks/RESULTS.md "Teacher quota"). Providers that
can call back (Replicate, fal, Luma, Kling, the local server) are given
`receiver.url` with each create; the gateway waits on the job's mailbox instead
of a poll timer, and polling stays as the fallback for a callback that never
comes.

    receiver = CallbackReceiver(host="127.0.0.1", port=0, verifier=StandardWebhookVerifier(secret))
    client = make_client(..., callback_url=receiver.url)
    await receiver.start(client)                    # uvicorn on this event loop
    box = receiver.expect(handle)                   # right after the create returns the job id
    outcome, status = await box.next(timeout_s)     # ("completed", status) | ("woke", None) | ("missed", None)
    receiver.forget(handle.job_id)
    await receiver.stop()

What a POST to `url` must pass, in order (each refusal counted, none acted on):
path token (unguessable, per run: 404) → body ≤ 1 MiB (413) → the provider's
signature where it has one (`teacher.webhooks`: 401, a replayed message id is
acknowledged 200 and ignored) → JSON naming a job id (400) → a job this actor
created and is waiting for (404 `unknown job`; a job that already ended
answers 200 `duplicate`). A signed callback carries the job's status; an
unsigned one (Luma, Kling, fal without a JWKS) only wakes a poll, so a
forged body can never inject a result URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import socket
from collections import OrderedDict
from typing import Any, Generator, Literal, Mapping, Optional, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from afd_async.teacher.contract import JobHandle, JobStatus
from afd_async.teacher.webhooks import WebhookRejected, WebhookReplayed

__all__ = ["CallbackClient", "Outcome", "CallbackReceiver", "Mailbox", "Verifier", "supports_callbacks"]

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024
_ENDED_REMEMBERED = 10_000  # job ids of ended jobs kept to answer late duplicates 200, not 404
Outcome = Literal["completed", "woke", "missed"]  # what waiting on a job's mailbox ended in (`Mailbox.next`)


class Verifier(Protocol):
    """A provider's signature scheme (`teacher.webhooks`): returns the message id or raises `WebhookRejected`."""

    signed: bool

    def verify(self, headers: Mapping[str, str], body: bytes) -> str: ...


class CallbackClient(Protocol):
    """What an adapter offers for callbacks (replicate, fal, luma, kling, openai/local)."""

    def callback_job_id(self, body: Any) -> Optional[str]: ...

    def callback_status(self, handle: JobHandle, body: Any) -> Optional[JobStatus]: ...


def supports_callbacks(client: object) -> bool:
    """Whether the adapter can send a callback URL and read a callback body."""
    return callable(getattr(client, "callback_job_id", None)) and callable(getattr(client, "callback_status", None))


class Mailbox:
    """Where callbacks for one job land; the gateway waits on it instead of a poll timer."""

    def __init__(self, handle: JobHandle) -> None:
        self.handle = handle
        self.ended = False  # a terminal status was delivered: later callbacks are duplicates
        self._event = asyncio.Event()
        self._status: Optional[JobStatus] = None

    def deliver(self, status: Optional[JobStatus]) -> bool:
        """Hand over a callback's status (None: "look now"); False if the job had already ended."""
        if self.ended:
            return False
        if status is not None and status.state.terminal:
            self.ended = True
        self._status = status
        self._event.set()
        return True

    async def next(self, timeout_s: float) -> tuple[Outcome, Optional[JobStatus]]:
        """Wait up to `timeout_s` for a callback: `("completed", status)` when it carried a terminal
        status; `("woke", None)` when it came without one (poll now); `("missed", None)` when none came
        (the fallback poll)."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except asyncio.TimeoutError:
            return "missed", None
        self._event.clear()
        status, self._status = self._status, None
        if status is not None and status.state.terminal:
            return "completed", status
        return "woke", None


class _InLoopServer(uvicorn.Server):
    """uvicorn on the actor's own event loop, leaving the actor's SIGTERM/SIGINT handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class CallbackReceiver:
    """Receives provider callbacks in the teacher actor's process (see the module docstring).

    Args:
        host / port: where to listen (port 0: the OS picks; the socket is bound here, so `url` is known
            before `start`).
        public_url: the base URL the provider reaches (a tunnel or ingress); None: `http://host:port`.
        verifier: the provider's signature scheme, or None for providers without one.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, public_url: Optional[str] = None,
                 verifier: Optional[Verifier] = None) -> None:
        self.verifier = verifier
        self._token = secrets.token_urlsafe(24)
        self._sock = socket.create_server((host, port), backlog=1024)
        self._sock.setblocking(False)
        bound = self._sock.getsockname()[1]
        self.url = f"{(public_url or f'http://{host}:{bound}').rstrip('/')}/teacher-callback/{self._token}"
        self.port = int(bound)
        self.counters: dict[str, int] = {k: 0 for k in ("received", "delivered", "duplicates", "replayed",
                                                        "unknown_job", "rejected", "bad_token")}
        self._boxes: dict[str, Mailbox] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._client: Optional[CallbackClient] = None
        self._server: Optional[_InLoopServer] = None
        self._task: Optional[asyncio.Task[None]] = None

    def __repr__(self) -> str:  # the URL holds the path token: never print it
        return f"CallbackReceiver(port={self.port}, signed={bool(self.verifier and self.verifier.signed)})"

    async def start(self, client: CallbackClient) -> None:
        """Serve on the bound socket, reading bodies with `client`'s parser; returns at once
        (connections wait in the listen backlog until uvicorn accepts them)."""
        self._client = client
        app = Starlette(routes=[Route("/teacher-callback/{token}", self._handle, methods=["POST"])])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = _InLoopServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="teacher-callbacks")

    async def stop(self) -> None:
        """Stop serving (jobs still waiting fall back to polling)."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5.0)
        self._sock.close()

    async def __aenter__(self) -> "CallbackReceiver":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the gateway's side ------------------------------------------------------------

    def expect(self, handle: JobHandle) -> Mailbox:
        """The mailbox of a job this actor created or resumed (idempotent per job id)."""
        box = self._boxes.get(handle.job_id)
        if box is None:
            box = self._boxes[handle.job_id] = Mailbox(handle)
        return box

    def forget(self, job_id: str) -> None:
        """The job has ended here: later callbacks for it are duplicates, answered 200 and ignored."""
        if self._boxes.pop(job_id, None) is not None:
            self._ended[job_id] = None
            while len(self._ended) > _ENDED_REMEMBERED:
                self._ended.popitem(last=False)

    # -- the provider's side -----------------------------------------------------------

    def _refuse(self, counter: str, status: int, reason: str) -> JSONResponse:
        self.counters[counter] += 1
        log.info("teacher callback refused (%d): %s", status, reason)
        return JSONResponse({"error": reason}, status_code=status)

    async def _handle(self, request: Request) -> JSONResponse:
        self.counters["received"] += 1
        if not hmac.compare_digest(request.path_params["token"].encode(), self._token.encode()):
            return self._refuse("bad_token", 404, "not found")
        body = await request.body()
        if len(body) > MAX_BODY:
            return self._refuse("rejected", 413, f"callback body over {MAX_BODY} bytes")
        signed = self.verifier is not None and self.verifier.signed
        if self.verifier is not None:
            try:
                self.verifier.verify(request.headers, body)
            except WebhookReplayed as e:
                self.counters["replayed"] += 1
                return JSONResponse({"duplicate": True, "reason": str(e)})
            except WebhookRejected as e:
                return self._refuse("rejected", 401, str(e))
        assert self._client is not None
        try:
            payload = json.loads(body)
            job_id = self._client.callback_job_id(payload)
        except (ValueError, TypeError, KeyError):
            job_id = None
        if job_id is None:
            return self._refuse("rejected", 400, "callback body is not JSON naming a job id")
        box = self._boxes.get(job_id)
        if box is None:
            if job_id in self._ended:
                self.counters["duplicates"] += 1
                return JSONResponse({"duplicate": True})
            return self._refuse("unknown_job", 404, f"unknown job {job_id[:80]!r}: not created by this actor")
        status: Optional[JobStatus] = None
        if signed:
            try:
                status = self._client.callback_status(box.handle, payload)
            except Exception as e:  # noqa: BLE001 - an unreadable status still wakes a poll
                log.info("teacher callback for %s: status unreadable (%s); polling", job_id, type(e).__name__)
        if not box.deliver(status):
            self.counters["duplicates"] += 1
            return JSONResponse({"duplicate": True})
        self.counters["delivered"] += 1
        return JSONResponse({"ok": True})
