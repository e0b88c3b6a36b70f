"""A connecting CURVE socket that is made anew when its handshake fails.

Why: libzmq (4.3.5) gives up on a connection whose handshake failed with a
protocol error (e.g. a plain-TCP impostor bound the server's port while the
real server was down): it neither retries nor reconnects, so without help the
client stays cut off after the impostor leaves and the real server is back.
`ClientSocket` watches the socket's monitor for handshake failures and, after a
bounded, doubling backoff, closes the socket and connects a fresh one; the
owner then redoes what a fresh connection needs (say hello, resend requests).
The monitor is attached before the socket connects: on loopback a handshake can
fail within microseconds of `connect`, and a failure the monitor missed would
leave that socket cut off for good (seen as a flaky test under load).

Same thread rule as every socket here: the owner thread alone calls it.

    conn = ClientSocket(make, endpoint, what="feed rank 0", watch=curve is not None)
    owner:  poller.register(conn.sock, zmq.POLLIN); conn.register(poller)
            events = dict(poller.poll(conn.timeout_ms(50)))
            if conn.service(poller):   # True: conn.sock is a new, connected socket
                redo_hello()
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Optional

import zmq
from zmq.utils.monitor import recv_monitor_message

__all__ = ["ClientSocket", "HANDSHAKE_FAILED"]

log = logging.getLogger(__name__)

HANDSHAKE_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol error",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "failed",
}
_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED
for _e in HANDSHAKE_FAILED:
    _EVENTS |= _e
_ids = itertools.count()


class ClientSocket:
    """One connecting socket, recreated after a failed handshake (see the module docstring).

    Args:
        make: returns a new socket with its options set, not yet connected (called now and on each recreation).
        endpoint: what the socket connects to, once its monitor is attached.
        what: names the socket in logs (an endpoint or role; never key material).
        watch: monitor handshakes (CURVE sockets); False keeps a plain socket as it is.
        backoff_s: wait after the first failure before recreating; doubles per failure in a row.
        max_backoff_s: the longest wait; a successful handshake resets it to `backoff_s`.
    """

    def __init__(self, make: Callable[[], zmq.Socket], endpoint: str, *, what: str, watch: bool = True,
                 backoff_s: float = 0.1, max_backoff_s: float = 2.0) -> None:
        if not 0 < backoff_s <= max_backoff_s:
            raise ValueError("need 0 < backoff_s <= max_backoff_s")
        self._make, self._endpoint, self._what, self._watch = make, endpoint, what, watch
        self._base, self._max, self._delay = backoff_s, max_backoff_s, backoff_s
        self._due: Optional[float] = None
        self.recreated = 0  # sockets made anew after a failed handshake
        self.sock, self.monitor = self._open()

    def _open(self) -> tuple[zmq.Socket, Optional[zmq.Socket]]:
        """A new socket, its monitor attached before it connects (see the module docstring)."""
        sock = self._make()
        # our own inproc name: pyzmq's default uses the fd, which a recreated socket may reuse
        monitor = sock.get_monitor_socket(_EVENTS, addr=f"inproc://afd-handshake-{id(self)}-{next(_ids)}") \
            if self._watch else None
        sock.connect(self._endpoint)
        return sock, monitor

    def register(self, poller: zmq.Poller) -> None:
        """Add the monitor to `poller` so a handshake failure wakes the owner (the data socket is the owner's)."""
        if self.monitor is not None:
            poller.register(self.monitor, zmq.POLLIN)

    def timeout_ms(self, ms: int) -> int:
        """`ms`, cut short so a poll returns when a recreation falls due."""
        if self._due is None:
            return ms
        return max(0, min(ms, int(1000 * (self._due - time.monotonic())) + 1))

    def service(self, poller: Optional[zmq.Poller] = None) -> bool:
        """Read handshake events without blocking; recreate the socket when due.

        Returns:
            True when `sock` was replaced (then re-registered in `poller`): whatever the
            old socket had queued is gone, so the owner redoes a fresh connection's start.
        """
        if self.monitor is None:
            return False
        while True:
            try:
                ev = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._delay = self._base
            elif ev["event"] in HANDSHAKE_FAILED and self._due is None:
                self._due = time.monotonic() + self._delay
                endpoint = ev["endpoint"].decode(errors="replace") if isinstance(ev["endpoint"], bytes) \
                    else str(ev["endpoint"])
                log.warning("%s: handshake with %s %s (code %s); new socket in %.1fs", self._what, endpoint,
                            HANDSHAKE_FAILED[ev["event"]], ev["value"], self._delay)
                self._delay = min(2 * self._delay, self._max)
        if self._due is None or time.monotonic() < self._due:
            return False
        self.renew(poller)
        return True

    def renew(self, poller: Optional[zmq.Poller] = None) -> None:
        """Close the socket and connect a new one (re-registered in `poller`); the owner redoes its start.

        Called by `service` after a failed handshake, and by an owner whose peer has been silent too long
        on a connection libzmq still counts as up (heartbeats unanswered: the Paranoid Pirate rule).
        """
        if poller is not None:
            poller.unregister(self.sock)
            if self.monitor is not None:
                poller.unregister(self.monitor)
        self._close(0)
        self._due = None
        self.sock, self.monitor = self._open()
        self.recreated += 1
        if poller is not None:
            poller.register(self.sock, zmq.POLLIN)
            if self.monitor is not None:
                poller.register(self.monitor, zmq.POLLIN)

    def _close(self, linger: int) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(0)
        self.sock.close(linger)

    def close(self, linger: int = 0) -> None:
        """Close the socket and its monitor (before the context is terminated)."""
        if not self.sock.closed:
            self._close(linger)
