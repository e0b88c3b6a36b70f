"""Round trips and rejections of the schema-versioned msgpack codec."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import torch

from afd_async.codec import DTYPES, MessageError, frame_to_tensor, pack, pack_parts, tensor_to_frame, unpack


def _sample(name: str, lib: str, shape=(2, 3, 4)):
    t = (torch.arange(int(np.prod(shape))).reshape(shape) % 7 - 3)
    tdt = DTYPES[name][0]
    if name.startswith("uint"):
        t = t.abs()
    t = t.to(torch.float64 if tdt.is_complex or tdt.is_floating_point else torch.int64).to(tdt)
    if tdt.is_complex:
        t = t + 1j * t
    return t if lib == "torch" else t.numpy()


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8), b.view(torch.uint8))
    return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


TORCH_CASES = sorted(DTYPES)
NUMPY_CASES = sorted(n for n, (_, nd) in DTYPES.items() if nd is not None)


@pytest.mark.parametrize("name", TORCH_CASES)
def test_torch_round_trip_every_dtype(name: str) -> None:
    t = _sample(name, "torch")
    out = unpack(pack({"kind": "x", "schema": 1, "t": t, "empty": t[:0]}), expect_kind="x")
    assert _equal(t, out["t"]) and out["empty"].shape == (0, 3, 4) and out["empty"].dtype == t.dtype
    out["t"].view(torch.uint8).zero_()  # decoded tensors are writable and own their memory


@pytest.mark.parametrize("name", NUMPY_CASES)
def test_numpy_round_trip_every_dtype(name: str) -> None:
    a = _sample(name, "numpy")
    out = unpack(pack({"kind": "x", "schema": 1, "a": a, "s": a[0, 0, 0]}), expect_kind="x")
    assert _equal(a, out["a"]) and out["a"].flags.writeable


def test_non_contiguous_big_endian_and_nested_values() -> None:
    t = torch.randn(4, 6).t()
    be = np.arange(12, dtype=">i4").reshape(3, 4)
    rec = {"kind": "k", "schema": 3, "t": t, "be": be, "nested": {"l": [1, 2.5, "s", b"b", None, True]}}
    out = unpack(pack(rec), expect_kind="k", schemas=(2, 3))
    assert torch.equal(out["t"], t) and np.array_equal(out["be"], be) and out["nested"] == rec["nested"]


def test_pack_parts_are_pack_without_copying_tensors() -> None:
    t, a = torch.arange(1000, dtype=torch.int32), np.arange(10, dtype=np.float64)
    rec = {"kind": "k", "schema": 1, "t": t, "a": a, "n": 3}
    parts = pack_parts(rec)
    assert b"".join(parts) == pack(rec) and len(parts) == 3
    t[0] = 7  # the tensor parts alias the tensors' memory: nothing was copied
    assert bytes(parts[1][:4]) == (7).to_bytes(4, "little")


@pytest.mark.parametrize("name", TORCH_CASES)
def test_frame_round_trip_zero_copy(name: str) -> None:
    t = _sample(name, "torch")
    header, buf = tensor_to_frame(t)
    assert header["kind"] == "tensor" and header["nbytes"] == buf.nbytes
    wire = bytearray(buf)  # a writable receive buffer: rebuilt without a copy
    out = frame_to_tensor(unpack(pack(header), expect_kind="tensor"), wire)
    assert _equal(t, out)
    wire[:] = b"\0" * len(wire)
    assert not out.view(torch.uint8).any()  # aliases the buffer
    assert _equal(t, frame_to_tensor(header, bytes(buf)))  # read-only buffer: copied


def test_frame_rejects_mismatches() -> None:
    header, buf = tensor_to_frame(torch.zeros(2, 3))
    with pytest.raises(MessageError, match="bytes"):
        frame_to_tensor(header, bytes(buf)[:-1])
    with pytest.raises(MessageError, match="dtype"):
        frame_to_tensor({**header, "dtype": "float8"}, buf)
    with pytest.raises(MessageError, match="needs"):
        frame_to_tensor({**header, "shape": [3, 3]}, buf)
    with pytest.raises(MessageError, match="schema"):
        frame_to_tensor({**header, "schema": 2}, buf)


def test_rejections_are_clear() -> None:
    good = pack({"kind": "pair", "schema": 1, "x": 1})
    with pytest.raises(MessageError, match="unsupported schema version 1"):
        unpack(good, expect_kind="pair", schemas=(2,))
    with pytest.raises(MessageError, match="expected a 'weights' message"):
        unpack(good, expect_kind="weights")
    with pytest.raises(MessageError, match="truncated"):
        unpack(good[:-1], expect_kind="pair")
    with pytest.raises(MessageError, match="msgpack map"):
        unpack(_frame([1, 2]), expect_kind="pair")  # type: ignore[arg-type]
    with pytest.raises(MessageError, match="'schema'"):
        unpack(_frame({"kind": "pair"}), expect_kind="pair")
    with pytest.raises(MessageError, match="'kind'"):
        pack({"schema": 1})
    with pytest.raises(MessageError, match="cannot pack"):
        pack({"kind": "x", "schema": 1, "o": object()})
    with pytest.raises(MessageError, match="unsupported tensor dtype"):
        pack({"kind": "x", "schema": 1, "o": np.zeros(2, dtype="datetime64[s]")})


def _frame(body: dict, tail: bytes = b"", magic: bytes = b"AFDM", version: int = 1) -> bytes:
    packed = msgpack.packb(body, use_bin_type=True)
    return magic + bytes([version]) + len(packed).to_bytes(4, "little") + packed + tail


def _with_tensor_ext(dtype: str, shape: list, raw: bytes, code: int = 2, offset: int = 0) -> bytes:
    ext = msgpack.ExtType(code, msgpack.packb([dtype, shape, offset, len(raw)]))
    return _frame({"kind": "x", "schema": 1, "t": ext}, raw)


def test_rejects_bad_tensor_payloads() -> None:
    with pytest.raises(MessageError, match="needs 24 bytes"):
        unpack(_with_tensor_ext("float32", [2, 3], b"\0" * 20), expect_kind="x")
    with pytest.raises(MessageError, match="unknown tensor dtype 'float8'"):
        unpack(_with_tensor_ext("float8", [2], b"\0" * 2), expect_kind="x")
    with pytest.raises(MessageError, match="no numpy equivalent"):
        unpack(_with_tensor_ext("bfloat16", [1], b"\0" * 2, code=1), expect_kind="x")
    with pytest.raises(MessageError, match="bad tensor shape"):
        unpack(_with_tensor_ext("uint8", [-1], b""), expect_kind="x")
    with pytest.raises(MessageError, match="extension type 9"):
        unpack(_with_tensor_ext("uint8", [1], b"\0", code=9), expect_kind="x")
    with pytest.raises(MessageError, match="bad tensor reference"):
        unpack(_with_tensor_ext("uint8", [1], b"\0", offset=1), expect_kind="x")
    with pytest.raises(MessageError, match="overruns"):
        unpack(_with_tensor_ext("uint8", [1], b"\0")[:-1], expect_kind="x")
    with pytest.raises(MessageError, match="unreferenced trailing bytes"):
        unpack(_with_tensor_ext("uint8", [1], b"\0") + b"\0", expect_kind="x")
    assert issubclass(MessageError, ValueError)


def test_rejects_foreign_framing() -> None:
    body = {"kind": "x", "schema": 1}
    assert unpack(_frame(body), expect_kind="x") == body
    with pytest.raises(MessageError, match="not an afd message"):
        unpack(msgpack.packb(body), expect_kind="x")
    with pytest.raises(MessageError, match="message format 2"):
        unpack(_frame(body, version=2), expect_kind="x")
    with pytest.raises(MessageError, match="truncated"):
        unpack(_frame(body)[:-1], expect_kind="x")
