"""Wire format of the feed (feeder ⇄ learner), on top of `afd_async.codec.msg`.

Every message is a `codec.msg` record of kind `"feed"`, schema `FEED_SCHEMA`,
with an `op` field. Learner (DEALER) → feeder (ROUTER), one frame each:

    hello  {rank}            register this socket as learner rank `rank`
    credit {n}               the learner can take n more batches
    ack    {seqs}            these batches were consumed (feeder may ack upstream)
    ping   {}                heartbeat; the feeder answers `pong`
    bye    {}                clean leave; unacked batches go to `on_lost`

Feeder → learner:

    welcome {rank}           answer to hello
    pong    {}               answer to ping
    reset   {reason}         "I do not know you" (feeder restarted): say hello again
    end     {}               no more batches for this rank
    batch   {seq, meta, tensors: [[name, tensor header], ...]}  + one frame per tensor

A batch travels as multipart `[header, buf_0, buf_1, ...]`; the buffers are the
tensors' own memory (`tensor_to_frame`, sent with `copy=False`) and the receiver
rebuilds tensors over the received frames without another copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch

from afd_async.codec.msg import MessageError, frame_to_tensor, pack, tensor_to_frame, unpack

__all__ = ["FEED_SCHEMA", "Batch", "ReceivedBatch", "control", "decode_control", "encode_batch", "decode_batch"]

FEED_SCHEMA = 1
Tensor = Union[torch.Tensor, np.ndarray]
_OPS_IN = frozenset({"hello", "credit", "ack", "ping", "bye"})
_OPS_OUT = frozenset({"welcome", "pong", "reset", "end", "batch"})


@dataclass(frozen=True)
class Batch:
    """One collated batch as the feeder hands it to the `FeedServer`.

    Attributes:
        tensors: name → tensor (torch or numpy, any dtype of `codec.msg.DTYPES`,
            contiguous or not); shapes are the collator's, e.g. `(B, C, F, h, w)`.
        meta: small msgpack-able values that travel in the header (pair ids,
            policy versions, ...).
        token: opaque handle that never leaves the feeder; it comes back through
            `on_ack(rank, token)` or `on_lost(rank, tokens)` (e.g. Redis stream ids).
    """

    tensors: Mapping[str, Tensor]
    meta: Mapping[str, Any] = field(default_factory=dict)
    token: Any = None


@dataclass(frozen=True)
class ReceivedBatch:
    """A batch as a learner receives it; tensors alias the received frames (writable, owned)."""

    seq: int
    tensors: dict[str, Tensor]
    meta: dict[str, Any]
    nbytes: int


def control(op: str, **fields: Any) -> bytes:
    """One single-frame control message."""
    return pack({"kind": "feed", "schema": FEED_SCHEMA, "op": op, **fields})


def decode_control(data: bytes | memoryview, *, inbound: bool) -> dict[str, Any]:
    """Decode a single-frame message; `inbound` = read by the feeder (learner → feeder ops).

    Raises:
        MessageError: foreign bytes, another kind or schema, an unknown op or bad fields.
    """
    msg = unpack(data, expect_kind="feed", schemas=(FEED_SCHEMA,))
    op = msg.get("op")
    if not isinstance(op, str) or op not in (_OPS_IN if inbound else _OPS_OUT):
        raise MessageError(f"unknown feed op {op!r}")
    if op in ("hello", "credit"):
        key = "rank" if op == "hello" else "n"
        v = msg.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise MessageError(f"feed {op} needs an int {key} >= 0, got {v!r}")
    if op == "ack":
        seqs = msg.get("seqs")
        if not isinstance(seqs, list) or not all(isinstance(s, int) for s in seqs):
            raise MessageError(f"feed ack needs a list of int seqs, got {seqs!r}")
    return msg


def encode_batch(seq: int, batch: Batch) -> list[Any]:
    """Frames `[header, buf_0, ...]` of one batch; the buffers alias the tensors (or their contiguous copies)."""
    specs: list[list[Any]] = []
    bufs: list[Any] = []
    for name, t in batch.tensors.items():
        header, buf = tensor_to_frame(t)
        specs.append([str(name), header])
        bufs.append(buf)
    head = pack({"kind": "feed", "schema": FEED_SCHEMA, "op": "batch", "seq": seq, "meta": dict(batch.meta),
                 "tensors": specs})
    return [head, *bufs]


def decode_batch(msg: Mapping[str, Any], frames: Sequence[Any]) -> ReceivedBatch:
    """Rebuild a batch from its decoded header and its tensor frames (zmq Frames or buffers).

    Raises:
        MessageError: frame count or any tensor header disagreeing with the frames.
    """
    specs, seq, meta = msg.get("tensors"), msg.get("seq"), msg.get("meta")
    if not isinstance(specs, list) or not isinstance(seq, int) or not isinstance(meta, dict):
        raise MessageError("feed batch header needs seq (int), meta (map) and tensors (list)")
    if len(specs) != len(frames):
        raise MessageError(f"feed batch announces {len(specs)} tensors, got {len(frames)} frames")
    tensors: dict[str, Tensor] = {}
    nbytes = 0
    for spec, frame in zip(specs, frames):
        if not (isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], str)):
            raise MessageError(f"bad tensor spec {spec!r}")
        buf = frame.buffer if hasattr(frame, "buffer") else frame
        tensors[spec[0]] = frame_to_tensor(spec[1], buf)
        nbytes += memoryview(buf).nbytes
    return ReceivedBatch(seq=seq, tensors=tensors, meta=meta, nbytes=nbytes)
