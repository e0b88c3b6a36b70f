"""Property tests of the ZeroMQ wire decoders: feed control frames and batches
(`transport.feed_wire`), weight messages and manifests (`transport.weights_layout`).

Any bytes or header give a valid message or the documented error
(`MessageError` for feed and weight messages, `WeightsRejected` for manifests);
what the encoders write, the decoders return exactly.
"""

from __future__ import annotations

import hashlib
import math

import msgpack
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afd_async.codec.msg import DTYPES, MessageError, pack, tensor_to_frame
from afd_async.transport.errors import WeightsRejected
from afd_async.transport.feed_wire import FEED_SCHEMA, Batch, control, decode_batch, decode_control, encode_batch
from afd_async.transport.weights_layout import ALIGN, Manifest, check_finite, decode_wmsg, plan_layout, wmsg

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_FEED_OPS = ["hello", "credit", "ack", "ping", "bye", "welcome", "pong", "reset", "end", "batch", "nope"]
_TORCH_DTYPES = [n for n in DTYPES if n not in ("uint16", "uint32", "uint64")]  # torch has no arithmetic for these


def _feed_frame(draw: st.DrawFn) -> bytes:
    body = draw(st.dictionaries(st.sampled_from(["op", "rank", "n", "seqs", "seq", "meta", "tensors"]), values, max_size=5))
    if draw(st.booleans()):
        body["op"] = draw(st.sampled_from(_FEED_OPS))
    return pack({"kind": "feed", "schema": draw(st.sampled_from([FEED_SCHEMA, FEED_SCHEMA, 2])), **body}) \
        if draw(st.booleans()) else msgpack.packb(body)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), inbound=st.booleans())
def test_feed_control_any_bytes_give_a_message_or_message_error(data: st.DataObject, inbound: bool) -> None:
    raw = data.draw(st.one_of(st.binary(max_size=96), st.builds(lambda: None).flatmap(lambda _: st.composite(
        lambda d: _feed_frame(d))())))
    try:
        msg = decode_control(raw, inbound=inbound)
    except MessageError as e:
        assert str(e)
        return
    assert msg["kind"] == "feed" and msg["schema"] == FEED_SCHEMA and isinstance(msg["op"], str)


@settings(max_examples=100, deadline=None)
@given(op=st.sampled_from(["hello", "credit"]), v=st.integers(0, 2**63 - 1), seqs=st.lists(st.integers(0, 2**40)))
def test_feed_control_round_trip(op: str, v: int, seqs: list[int]) -> None:
    key = "rank" if op == "hello" else "n"
    assert decode_control(control(op, **{key: v}), inbound=True)[key] == v
    assert decode_control(control("ack", seqs=seqs), inbound=True)["seqs"] == seqs


def _raw(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    name = draw(st.sampled_from(_TORCH_DTYPES))
    shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=4))
    n = math.prod(shape)
    raw = draw(st.binary(min_size=n * torch.empty((), dtype=DTYPES[name][0]).element_size(),
                         max_size=n * torch.empty((), dtype=DTYPES[name][0]).element_size()))
    t = torch.frombuffer(bytearray(raw), dtype=DTYPES[name][0]) if raw else torch.empty(0, dtype=DTYPES[name][0])
    return t.reshape(shape)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ts=st.dictionaries(st.text(min_size=1, max_size=6), tensors(), max_size=4), seq=st.integers(0, 2**40),
       meta=st.dictionaries(st.text(max_size=6), values, max_size=3))
def test_feed_batch_round_trip_bit_exact(ts: dict[str, torch.Tensor], seq: int, meta: dict) -> None:
    frames = encode_batch(seq, Batch(tensors=ts, meta=meta))
    head = decode_control(frames[0], inbound=False)
    got = decode_batch(head, [bytes(f) for f in frames[1:]])
    assert got.seq == seq and got.meta == meta and list(got.tensors) == list(ts)
    for name, t in ts.items():
        r = got.tensors[name]
        assert r.dtype == t.dtype and r.shape == t.shape
        assert _raw(r) == _raw(t)


@settings(max_examples=120, deadline=None)
@given(specs=st.one_of(values, st.lists(st.lists(values, min_size=2, max_size=2), max_size=3)),
       header=st.dictionaries(st.sampled_from(["kind", "schema", "dtype", "shape", "lib", "nbytes"]), values),
       frames=st.lists(st.binary(max_size=24), max_size=3), seq=values, meta=values)
def test_feed_batch_any_header_and_frames_give_a_batch_or_message_error(specs, header, frames, seq, meta) -> None:
    good_header, _ = tensor_to_frame(torch.zeros(2, dtype=torch.float32))
    for s in (specs, [["x", header]], [["x", {**good_header, **header}]] * len(frames)):
        try:
            decode_batch({"seq": seq, "meta": meta, "tensors": s}, frames)
        except MessageError as e:
            assert str(e)


def _manifest(ts: dict[str, torch.Tensor], version: int, chunk: int) -> Manifest:
    entries, total = plan_layout(ts)
    blob = bytearray(total)
    for e in entries:
        blob[e.offset : e.offset + e.nbytes] = _raw(ts[e.name])
    digests = tuple(hashlib.sha256(blob[i : i + chunk]).digest() for i in range(0, total, chunk))
    top = Manifest.top_digest(version, "full", total, chunk, entries, digests)
    return Manifest(version, "full", total, chunk, tuple(entries), digests, top)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ts=st.dictionaries(st.text(min_size=1, max_size=6), tensors(), min_size=1, max_size=4),
       version=st.integers(0, 2**62), chunk=st.sampled_from([ALIGN, 4 * ALIGN, 1 << 20]))
def test_manifest_round_trip_and_any_field_change_is_caught(ts, version: int, chunk: int) -> None:
    m = _manifest(ts, version, chunk)
    wire = msgpack.unpackb(msgpack.packb(m.to_wire()))  # as it crosses the wire
    assert Manifest.from_wire(wire, max_bytes=1 << 30) == m
    tampered = {**wire, "version": version + 1}
    with pytest.raises(WeightsRejected) as info:
        Manifest.from_wire(tampered, max_bytes=1 << 30)
    assert info.value.reason == "hash"


@settings(max_examples=150, deadline=None)
@given(d=st.one_of(values, st.dictionaries(
    st.sampled_from(["version", "scope", "total", "chunk_size", "entries", "chunk_digests", "sha256"]),
    st.one_of(values, st.lists(st.lists(values, min_size=5, max_size=5), max_size=3),
              st.lists(st.binary(min_size=32, max_size=32), max_size=3)))))
def test_manifest_any_map_gives_a_manifest_or_weights_rejected(d) -> None:
    try:
        Manifest.from_wire(d, max_bytes=1 << 20)
    except WeightsRejected as e:
        assert e.reason in ("layout", "hash") and str(e)


@settings(max_examples=120, deadline=None)
@given(raw=st.one_of(st.binary(max_size=96), st.dictionaries(
    st.sampled_from(["op", "rid", "version", "index", "sizes", "manifest", "sha256"]), values).map(
        lambda d: pack({"kind": "weights", "schema": 1, **d}))))
def test_weights_message_any_bytes_give_a_message_or_message_error(raw: bytes) -> None:
    try:
        msg = decode_wmsg(raw)
    except MessageError as e:
        assert str(e)
        return
    assert msg["kind"] == "weights" and msg["op"] in ("announce", "latest", "manifest", "none", "chunk", "gone")
    assert decode_wmsg(wmsg(msg["op"], rid=1))["rid"] == 1


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64]),
       n=st.integers(1, 300), bad=st.sampled_from([float("nan"), float("inf"), float("-inf"), None]),
       where=st.integers(0, 10_000))
def test_check_finite_finds_any_nan_or_inf(dtype: torch.dtype, n: int, bad: float | None, where: int) -> None:
    t = torch.randn(n, dtype=torch.float64).to(dtype)
    if bad is not None:
        t[where % n] = bad
    got = check_finite({"ok": torch.ones(3), "t": t, "ints": torch.arange(4)})
    assert got == ("t" if bad is not None else None)


def test_manifest_with_a_valid_hash_but_wrong_field_types_is_a_layout_rejection() -> None:
    """The hash proves integrity, not sanity: a float offset (which would crash the subscriber's
    slicing later) or an int where a digest belongs (`bytes(n)` allocates n bytes) is refused."""
    from afd_async.transport.weights_layout import TensorEntry

    for entries, digests in (
        ([TensorEntry("w", "float32", (2,), 0.0, 8)], [b"\x00" * 32]),  # type: ignore[arg-type]
        ([TensorEntry("w", "float32", (2,), 0, 8)], [1 << 40]),
        ([TensorEntry("w", "float32", (True, 2), 0, 8)], [b"\x00" * 32]),
    ):
        top = Manifest.top_digest(3, "full", 8, ALIGN, entries, [d if isinstance(d, bytes) else b"" for d in digests])
        wire = {"version": 3, "scope": "full", "total": 8, "chunk_size": ALIGN, "sha256": top,
                "entries": [[e.name, e.dtype, list(e.shape), e.offset, e.nbytes] for e in entries],
                "chunk_digests": digests}
        with pytest.raises(WeightsRejected) as info:
            Manifest.from_wire(msgpack.unpackb(msgpack.packb(wire)), max_bytes=1 << 20)
        assert info.value.reason == "layout" and info.value.version == 3
