"""In-process feed and weights: the `BatchSource` / `WeightSink` / `WeightSource` contracts (`afd_async/seams.py`)
for a producer and a consumer in one process, so `afd sync`-style code runs the roles' paths without sockets."""

from __future__ import annotations

import collections
import itertools
import threading
import time
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from afd_async.transport.errors import FeedEnded, TransportTimeout
from afd_async.transport.feed_wire import Batch, ReceivedBatch
from afd_async.transport.weights_subscriber import WeightsUpdate


def _own(t: Any) -> Any:
    """A private copy, as a received frame is: the producer may reuse its tensor."""
    return t.detach().clone() if isinstance(t, torch.Tensor) else np.array(t, copy=True)


class LocalFeed:
    """A feed whose producer is in the same process: `offer` batches, a learner `next`s and `ack`s them.

    `on_ack(token)` / `on_lost(tokens)` play the FeedServer's hooks: a batch's token comes back when it is
    acked, or, never acked, when the feed closes.
    """

    def __init__(self, *, on_ack: Optional[Callable[[Any], None]] = None,
                 on_lost: Optional[Callable[[list[Any]], None]] = None) -> None:
        self._on_ack, self._on_lost = on_ack, on_lost
        self._ready: collections.deque[ReceivedBatch] = collections.deque()
        self._tokens: dict[int, Any] = {}  # seq -> token, until acked
        self._seqs = itertools.count()
        self._ended = False
        self._cond = threading.Condition()

    def offer(self, batch: Batch) -> int:
        """Queue `batch` for the learner; returns its seq."""
        tensors = {name: _own(t) for name, t in batch.tensors.items()}
        nbytes = sum(int(t.nbytes) for t in tensors.values())
        with self._cond:
            seq = next(self._seqs)
            self._tokens[seq] = batch.token
            self._ready.append(ReceivedBatch(seq=seq, tensors=tensors, meta=dict(batch.meta), nbytes=nbytes))
            self._cond.notify_all()
        return seq

    def end(self) -> None:
        """No more batches: `next` raises `FeedEnded` once the queued ones are taken."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def next(self, timeout_s: float) -> ReceivedBatch:
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self._ended, timeout=timeout_s):
                raise TransportTimeout(f"local feed: no batch within {timeout_s}s")
            if not self._ready:
                raise FeedEnded("local feed: the producer has no more batches")
            return self._ready.popleft()

    def ack(self, batch: ReceivedBatch | int) -> None:
        seq = batch if isinstance(batch, int) else batch.seq
        with self._cond:
            known = seq in self._tokens
            token = self._tokens.pop(seq, None)
        if known and self._on_ack is not None:
            self._on_ack(token)

    def close(self) -> None:
        """Unacked batches go back to the producer (`on_lost`), as a FeedClient's do on close."""
        with self._cond:
            lost, self._tokens = list(self._tokens.values()), {}
            self._ready.clear()
        if lost and self._on_lost is not None:
            self._on_lost(lost)

    def __enter__(self) -> LocalFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalWeights:
    """A weights board in one process: the learner `publish`es, each reader is a `source()`.

    A published version is a private copy, so the learner's next in-place step does not change it; readers
    share that copy (they load it, never write it).
    """

    def __init__(self) -> None:
        self._latest: Optional[WeightsUpdate] = None
        self._cond = threading.Condition()

    def publish(self, version: int, state_dict: Mapping[str, torch.Tensor]) -> WeightsUpdate:
        t0 = time.monotonic()
        sd = {name: t.detach().clone() for name, t in state_dict.items()}
        update = WeightsUpdate(version=int(version), sha256="", scope="full", state_dict=sd,
                               nbytes=sum(t.numel() * t.element_size() for t in sd.values()),
                               seconds=time.monotonic() - t0)
        with self._cond:
            self._latest = update
            self._cond.notify_all()
        return update

    def source(self) -> LocalWeightSource:
        return LocalWeightSource(self)

    def __enter__(self) -> LocalWeights:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _newer(self, than: int) -> Optional[WeightsUpdate]:
        latest = self._latest
        return latest if latest is not None and latest.version > than else None


class LocalWeightSource:
    """One reader of a `LocalWeights` board (a `WeightSource`)."""

    def __init__(self, board: LocalWeights) -> None:
        self._board = board
        self.current: Optional[WeightsUpdate] = None

    @property
    def version(self) -> int:
        return self.current.version if self.current is not None else -1

    def poll_update(self, timeout_s: float) -> Optional[WeightsUpdate]:
        with self._board._cond:
            update = self._board._newer(self.version)
        if update is not None:
            self.current = update
        return update

    def wait_for_version(self, min_version: int, timeout_s: float) -> WeightsUpdate:
        board = self._board
        with board._cond:
            if not board._cond.wait_for(lambda: max(self.version, board._latest.version if board._latest else -1)
                                        >= min_version, timeout=timeout_s):
                raise TransportTimeout(f"no weights version >= {min_version} within {timeout_s}s: holding {self.version}")
            update = board._newer(self.version)
        if update is not None:
            self.current = update
        assert self.current is not None
        return self.current

    def __enter__(self) -> LocalWeightSource:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
