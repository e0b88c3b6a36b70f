"""A CURVE client socket whose handshake fails at once is still made anew (`transport/_handshake.py`).

On loopback a peer that is not a ZMTP server can fail the handshake as soon as the
connection is up. The failure must reach the monitor (attached before `connect`), or libzmq,
which neither retries nor reconnects after a protocol error, leaves the socket cut off."""

from __future__ import annotations

import socket
import threading
import time

import zmq

from afd_async.transport._handshake import ClientSocket
from afd_async.transport._sockets import CurveClientKeys, make_socket


def garbage_server() -> tuple[socket.socket, threading.Event]:
    """A TCP listener that answers every connection at once with bytes no ZMTP peer sends, then closes it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    done = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except (socket.timeout, OSError):
                continue
            try:
                conn.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"HTTP/1.1 400 nope\r\n\r\n" * 4)
            except OSError:
                pass
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv, done


def test_every_socket_sees_its_immediate_handshake_failure_and_is_made_anew():
    srv, done = garbage_server()
    endpoint = "tcp://127.0.0.1:%d" % srv.getsockname()[1]
    spub, _ = zmq.curve_keypair()
    pub, sec = zmq.curve_keypair()
    keys = CurveClientKeys(server_public=spub, public=pub, secret=sec)
    ctx = zmq.Context()
    try:
        for i in range(40):
            conn = ClientSocket(lambda: make_socket(ctx, zmq.DEALER, hwm=4, client_curve=keys), endpoint,
                                what=f"socket {i}", backoff_s=0.01, max_backoff_s=0.01)
            try:
                deadline = time.monotonic() + 20
                while not conn.service() and time.monotonic() < deadline:
                    zmq.Poller().poll(10)
                assert conn.recreated >= 1, f"socket {i}: its failed handshake was never seen"
            finally:
                conn.close()
    finally:
        done.set()
        srv.close()
        ctx.term()
