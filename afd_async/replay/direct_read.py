"""Run one Redis command and receive its large bulk strings straight into writable buffers.

Why: through redis-py and hiredis a 100 KB stream field is copied three times
after the kernel's copy (socket → redis-py's read buffer → hiredis's buffer →
a `bytes` object), and `bytes` are read-only, so a tensor over them needs a
fourth. Measured on the 2-core VM (`benchmarks/bench_replay.py` era, pipelined
GET of 100 KB values): 45 µs of client CPU a value that way, 18 µs received
directly into a `bytearray`, which the pair decoder then wraps without a copy.

The reply is parsed here (RESP2 and RESP3; the types a stream read returns).
Bulk strings of at least `direct_min_bytes` come back as `bytearray`, smaller
ones as `bytes`; an error reply is raised as `redis.ResponseError`.

The connection is one of the client's own (authentication, TLS and timeouts are
the client's); the command goes out through `store.pipeline` and the reply is
read from the connection's socket, so the connection's parser is bypassed for
this one reply and stays in step (it has nothing buffered between replies).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import redis

from afd_async.store.pipeline import Arg, frame

DIRECT_MIN_BYTES = 16 << 10
_BUFFER_BYTES = 64 << 10  # headers and small values; large values bypass it


def execute_direct(client: redis.Redis, command: Sequence[Arg], *, direct_min_bytes: int = DIRECT_MIN_BYTES) -> Any:
    """Send `command` on one of `client`'s connections and return its parsed reply.

    A connection error or timeout is retried as the client's own commands are (its
    `retry` policy, on a new connection), so the command may run twice.

    Raises:
        redis.ResponseError: the server's error reply (the connection stays usable).
        redis.ConnectionError, redis.TimeoutError: retries exhausted.
    """
    wire = frame([command])
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        reply = conn.retry.call_with_retry(lambda: _exchange(conn, wire, direct_min_bytes),
                                           lambda _error: conn.disconnect())
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    if isinstance(reply, redis.ResponseError):
        raise reply
    return reply


def _exchange(conn: Any, wire: list[Any], direct_min_bytes: int) -> Any:
    conn.send_packed_command(wire)
    reader = _ReplyReader(conn._sock, direct_min_bytes)
    try:
        reply = reader.value()
    except socket.timeout as e:
        conn.disconnect()
        raise redis.TimeoutError(f"Timeout reading a reply: {e}") from e
    except OSError as e:
        conn.disconnect()
        raise redis.ConnectionError(f"Error reading a reply: {e}") from e
    except redis.RedisError:
        conn.disconnect()
        raise
    if reader.start != reader.end:  # bytes past the one reply we asked for: the connection is out of step
        conn.disconnect()
    return reply


class _ReplyReader:
    """A RESP parser over a socket with a small buffer; large bulk strings are received into their own buffers."""

    def __init__(self, sock: socket.socket, direct_min_bytes: int) -> None:
        if sock is None:
            raise redis.ConnectionError("connection has no socket")
        self.sock, self.direct_min = sock, direct_min_bytes
        self.buf = bytearray(_BUFFER_BYTES)
        self.mv = memoryview(self.buf)
        self.start = self.end = 0

    def _fill(self, need: int = 1) -> None:
        """Receive until at least `need` unread bytes are buffered (compacting or growing the buffer)."""
        while self.end - self.start < need:
            if self.start == self.end:
                self.start = self.end = 0
            if self.start + need > len(self.buf):
                n = self.end - self.start
                self.buf[:n] = self.buf[self.start:self.end]
                self.start, self.end = 0, n
                if need > len(self.buf):
                    self.mv.release()
                    self.buf.extend(bytes(need - len(self.buf)))
                    self.mv = memoryview(self.buf)
            got = self.sock.recv_into(self.mv[self.end:])
            if not got:
                raise redis.ConnectionError("Connection closed by server.")
            self.end += got

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n", self.start, self.end)
            if i >= 0:
                line = bytes(self.mv[self.start:i])
                self.start = i + 2
                return line
            self._fill(self.end - self.start + 1)

    def _bulk(self, n: int) -> bytes | bytearray:
        value: bytes | bytearray
        if n < self.direct_min:
            self._fill(n + 2)
            value = bytes(self.mv[self.start:self.start + n])
            self.start += n
        else:
            value = bytearray(n)
            with memoryview(value) as out:
                have = min(n, self.end - self.start)
                out[:have] = self.mv[self.start:self.start + have]
                self.start += have
                while have < n:
                    got = self.sock.recv_into(out[have:])
                    if not got:
                        raise redis.ConnectionError("Connection closed by server.")
                    have += got
            self._fill(2)
        if self.mv[self.start:self.start + 2] != b"\r\n":
            raise redis.InvalidResponse("bulk string not terminated by CRLF")
        self.start += 2
        return value

    def value(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$" or kind == b"=":
            n = int(rest)
            return None if n < 0 else self._bulk(n)
        if kind == b"*" or kind == b"~":
            n = int(rest)
            return None if n < 0 else [self.value() for _ in range(n)]
        if kind == b"%":
            return {self.value(): self.value() for _ in range(int(rest))}
        if kind == b":":
            return int(rest)
        if kind == b"+":
            return rest
        if kind == b"_":
            return None
        if kind == b"-":
            return redis.ResponseError(rest.decode(errors="replace"))
        if kind == b"!":
            return redis.ResponseError(bytes(self._bulk(int(rest))).decode(errors="replace"))
        raise redis.InvalidResponse(f"unexpected reply type {line[:16]!r}")
