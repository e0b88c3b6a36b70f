"""Socket plumbing shared by the feed and weight sync: CURVE keys, binding, wake-ups.

ZeroMQ sockets are not thread-safe: each socket here is owned by one thread.
Other threads talk to that owner through a `Waker` (an inproc PAIR whose sending
end is guarded by a lock); the owner polls the waker next to its network socket:

    waker = Waker(ctx)                      # owner thread and callers share it
    caller:  waker.send(b"...")             # any thread, never blocks past timeout
    owner:   poller.register(waker.receiver, zmq.POLLIN); ... waker.drain()

High-water marks count messages, not bytes, so sockets that carry MB frames get
small HWMs (`MB_FRAME_HWM`); flow control above them (credits, one chunk window)
keeps queues bounded without relying on ZeroMQ dropping anything.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Optional

import zmq
import zmq.auth.thread

__all__ = ["CurveServerKeys", "CurveClientKeys", "Waker", "bind", "make_socket", "recv_ready", "serve_loop",
           "start_authenticator", "MB_FRAME_HWM"]

MB_FRAME_HWM = 8  # messages; the credit/window protocols never need more in flight per peer
_SOCKBUF = 4 << 20  # kernel socket buffers for MB frames on loopback
_ids = itertools.count()


@dataclass(frozen=True)
class CurveServerKeys:
    """CURVE keys of a bound (server) socket; Z85 bytes as from `zmq.curve_keypair()`.

    Attributes:
        public: the server's public key (clients need it).
        secret: the server's secret key.
        allowed_clients: client public keys let in; None lets in any client that
            knows `public` (encryption without client authentication).
    """

    public: bytes
    secret: bytes
    allowed_clients: Optional[Collection[bytes]] = None


@dataclass(frozen=True)
class CurveClientKeys:
    """CURVE keys of a connecting (client) socket: the server's public key and the client's pair."""

    server_public: bytes
    public: bytes
    secret: bytes


def start_authenticator(ctx: zmq.Context, keys: CurveServerKeys) -> Optional[zmq.auth.thread.ThreadAuthenticator]:
    """Start a ZAP handler on `ctx` that admits only `keys.allowed_clients` (None: no handler needed)."""
    if keys.allowed_clients is None:
        return None
    allowed = frozenset(keys.allowed_clients)

    class _Provider:
        def callback(self, domain: str, key: bytes) -> bool:  # noqa: ARG002 - ZAP callback signature
            return key in allowed  # pyzmq hands the Z85-encoded client key

    auth = zmq.auth.thread.ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_Provider())
    return auth


def make_socket(
    ctx: zmq.Context,
    kind: int,
    *,
    hwm: int = MB_FRAME_HWM,
    server_curve: Optional[CurveServerKeys] = None,
    client_curve: Optional[CurveClientKeys] = None,
) -> zmq.Socket:
    """A socket with bounded HWMs, no linger, large kernel buffers and CURVE applied if keys are given."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.SNDBUF, _SOCKBUF)
    sock.setsockopt(zmq.RCVBUF, _SOCKBUF)
    if server_curve is not None:
        sock.curve_secretkey = server_curve.secret
        sock.curve_publickey = server_curve.public
        sock.curve_server = True
    if client_curve is not None:
        sock.curve_serverkey = client_curve.server_public
        sock.curve_publickey = client_curve.public
        sock.curve_secretkey = client_curve.secret
    return sock


def bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind and return the resolved endpoint (`tcp://127.0.0.1:0` or `:*` gets the real port)."""
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        endpoint = endpoint[:-2] + ":*"
    sock.bind(endpoint)
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


class Waker:
    """Cross-thread channel into a socket-owning thread (inproc PAIR, lock on the sending end)."""

    def __init__(self, ctx: zmq.Context) -> None:
        addr = f"inproc://afd-waker-{id(self)}-{next(_ids)}"
        self.receiver = ctx.socket(zmq.PAIR)
        self.receiver.setsockopt(zmq.LINGER, 0)
        self.receiver.bind(addr)
        self._sender = ctx.socket(zmq.PAIR)
        self._sender.setsockopt(zmq.LINGER, 0)
        self._sender.setsockopt(zmq.SNDHWM, 0)  # control messages are tiny and few
        self._sender.connect(addr)
        self._lock = threading.Lock()

    def send(self, data: bytes = b"") -> None:
        """Hand `data` to the owner thread (thread-safe)."""
        with self._lock:
            if not self._sender.closed:
                self._sender.send(data)

    def drain(self) -> list[bytes]:
        """Owner thread: everything sent so far, without blocking."""
        out: list[bytes] = []
        while True:
            try:
                out.append(self.receiver.recv(zmq.NOBLOCK))
            except zmq.Again:
                return out

    def close(self) -> None:
        with self._lock:
            self._sender.close(0)
        self.receiver.close(0)


def serve_loop(sock: zmq.Socket, waker: Waker, stop: threading.Event, tick: Callable[[bool], None], *,
               poll_ms: int = 50) -> None:
    """The I/O thread of a server socket (feed server, weight publisher), until `stop` is set.

    Each turn waits up to `poll_ms` for a message on `sock` or a nudge from `waker` (drained),
    then calls `tick(readable)`: `readable` says messages wait on `sock` (`recv_ready` takes them).
    The thread owns `sock`; other threads reach it through `waker` only.
    """
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(waker.receiver, zmq.POLLIN)
    while not stop.is_set():
        events = dict(poller.poll(poll_ms))
        if waker.receiver in events:
            waker.drain()
        tick(sock in events)


def recv_ready(sock: zmq.Socket, limit: int) -> Iterator[list[bytes]]:
    """Up to `limit` multipart messages already queued on `sock`, without blocking (a bounded turn)."""
    for _ in range(limit):
        try:
            yield sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
