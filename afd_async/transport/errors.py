"""Errors raised by the ZeroMQ transport (feed and weight sync).

Every blocking call in `afd_async.transport` takes a timeout and raises
`TransportTimeout` (also a builtin `TimeoutError`) when it runs out, with a
message that says what was awaited and what was last heard from the peer.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["TransportError", "TransportTimeout", "FeedEnded", "WeightsRejected", "RejectReason"]

RejectReason = Literal["hash", "nonfinite", "stale", "schema", "layout", "gone"]


class TransportError(RuntimeError):
    """Base class of every transport failure."""


class TransportTimeout(TransportError, TimeoutError):
    """A blocking call ran past its timeout."""


class FeedEnded(TransportError):
    """The feed has no more batches for this rank (its `next_batch` raised `StopIteration`)."""


class WeightsRejected(TransportError):
    """A received weight version failed a check; the subscriber kept its last good weights.

    Attributes:
        reason: which check failed (`hash`: a chunk or the whole digest differs;
            `nonfinite`: NaN/Inf in a float tensor; `stale`: version not newer than
            the one held; `schema`/`layout`: a malformed manifest or chunk;
            `gone`: the publisher dropped the version mid-fetch).
        version: the version that was refused.
    """

    def __init__(self, reason: RejectReason, version: int, detail: str) -> None:
        super().__init__(f"weights version {version} rejected ({reason}): {detail}")
        self.reason: RejectReason = reason
        self.version = version
