"""Send a batch of Redis commands in one round trip, large arguments straight from their memory.

Why not redis-py's `pipeline()`: it frames every command into one `bytes`
(with hiredis, `pack_command` copies each 100 KB payload into it), so a pair's
tensors would be copied twice before the kernel's copy (`b"".join` of the
message, then the command). Here an argument may be a list of buffers (e.g.
`codec.msg.pack_parts`: a small header and views of the tensors) that goes out
as one RESP bulk string, the parts back to back: large parts are handed to the
socket as they are, small ones are coalesced with the framing.

The connection is one of the client's own (its pool: authentication, TLS and
timeouts are the client's); replies are read with its parser (hiredis when
installed), so the socket stays in step with the pool.

Call order:

    replies = execute(r, [["SET", key, parts, "PX", 60_000], ["XADD", stream, "*", "m", meta]],
                      transaction=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import redis

__all__ = ["Arg", "Buffer", "execute", "frame"]

Buffer = Union[bytes, bytearray, memoryview]
Arg = Union[Buffer, str, int, Sequence[Buffer]]  # a sequence of buffers is ONE argument, sent back to back
_ZERO_COPY_MIN = 16 << 10  # parts at least this large go to the socket as they are; smaller ones are joined
_BUFFER_TYPES = (bytes, bytearray, memoryview)  # exact types: `frame` dispatches on type(), a hot path
_FAST_TYPES = frozenset((str, int, list, tuple, *_BUFFER_TYPES))


def _nbytes(part: Buffer) -> int:
    return part.nbytes if type(part) is memoryview else len(part)


def _normalize(arg: Any) -> Arg:
    """`arg` as one of the exact types `frame` dispatches on (subclasses of str, int and the buffers)."""
    if isinstance(arg, bool) or not isinstance(arg, (str, int, bytes, bytearray, memoryview, list, tuple)):
        raise TypeError(f"a Redis argument is bytes-like, str, int or a list of buffers, got {type(arg).__name__}")
    if isinstance(arg, str):
        return str(arg)
    if isinstance(arg, int):
        return int(arg)
    if isinstance(arg, (list, tuple)):
        return list(arg)
    return memoryview(arg)


def _part_size(part: Any) -> int:
    if not isinstance(part, (bytes, bytearray, memoryview)):
        raise TypeError(f"a list argument holds buffers only (bytes, bytearray, memoryview), got {type(part).__name__}")
    return memoryview(part).nbytes


def frame(commands: Sequence[Sequence[Arg]]) -> list[Buffer]:
    """RESP2 framing of `commands` as buffers to send in order (no large part copied).

    Raises:
        TypeError: an argument of another type (bools and floats are refused: their
            text form is ambiguous).
    """
    out: list[Buffer] = []
    head = bytearray()
    for cmd in commands:
        if not cmd:
            raise TypeError("a command needs at least its name")
        head += b"*%d\r\n" % len(cmd)
        for arg in cmd:
            kind = type(arg)
            if kind not in _FAST_TYPES:
                arg = _normalize(arg)
                kind = type(arg)
            if kind is str:
                arg = arg.encode()
            elif kind is int:
                arg = b"%d" % arg
            elif kind is list or kind is tuple:
                sizes = [_nbytes(p) if type(p) in _BUFFER_TYPES else _part_size(p) for p in arg]  # type: ignore[union-attr]
                head += b"$%d\r\n" % sum(sizes)
                for part, size in zip(arg, sizes):  # type: ignore[arg-type]
                    if size >= _ZERO_COPY_MIN:
                        out.append(bytes(head))
                        head.clear()
                        out.append(part)
                    else:
                        head += part
                head += b"\r\n"
                continue
            size = _nbytes(arg)  # type: ignore[arg-type]
            head += b"$%d\r\n" % size
            if size >= _ZERO_COPY_MIN:
                out.append(bytes(head))
                head.clear()
                out.append(arg)  # type: ignore[arg-type]
                head += b"\r\n"
            else:
                head += arg  # type: ignore[operator]
                head += b"\r\n"
    out.append(bytes(head))
    return out


def execute(client: redis.Redis, commands: Sequence[Sequence[Arg]], *, transaction: bool = False) -> list[Any]:
    """Run `commands` in one round trip on one of `client`'s connections; their raw replies, in order.

    Args:
        client: a redis-py client (`decode_responses=False`: replies are bytes).
        commands: each a command name and its arguments (see `Arg`).
        transaction: wrap them in MULTI/EXEC, so they run all together or not at all
            (a connection lost before EXEC runs none of them).

    A connection error or timeout is retried as the client's own commands are (its
    `retry` policy, on a new connection): the commands may then run twice, so callers
    must tolerate that (the pair writer is at-least-once; readers dedupe by pair id).

    Raises:
        redis.ResponseError: the first command that failed (after every reply was read,
            so the connection stays usable); with `transaction`, a command the server
            refused to queue aborts them all (EXECABORT).
        redis.ConnectionError, redis.TimeoutError: retries exhausted; whether the commands
            ran is unknown.
    """
    if not commands:
        return []
    wire = frame([["MULTI"], *commands, ["EXEC"]] if transaction else commands)
    n = len(commands) + 2 if transaction else len(commands)
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        replies = conn.retry.call_with_retry(lambda: _exchange(conn, wire, n), lambda _error: conn.disconnect())
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    if transaction and not isinstance(replies[-1], Exception):
        replies = list(replies[-1])  # EXEC's reply: one per command
    for reply in replies:  # with an aborted transaction, the refused command's error comes first
        if isinstance(reply, Exception):
            raise reply
    return replies


def _exchange(conn: Any, wire: list[Buffer], n: int) -> list[Any]:
    """Send the framed commands and read all `n` replies; error replies come back as exceptions."""
    conn.send_packed_command(wire)
    replies: list[Any] = []
    for _ in range(n):
        try:
            replies.append(conn.read_response(disable_decoding=True))
        except redis.ResponseError as e:  # keep reading: the remaining replies are on the socket
            replies.append(e)
    return replies
