"""Schema-versioned msgpack messages with tensors (DESIGN.md §4: "every message
and record carries a schema version; readers reject unknown versions").

Every message is a msgpack map (framed, see `pack`) with two reserved fields:

- `kind` (str): what the message is (`"pair"`, `"weights_chunk"`, ...); a reader
  states the kind it expects and gets a `MessageError` for any other.
- `schema` (int >= 1): the version of that kind's layout; a reader states the
  versions it understands and gets a `MessageError` for any other.

Values may be anything msgpack carries plus numpy arrays and torch tensors,
which travel as msgpack extension types holding `(dtype, shape)` and a reference
to their raw little-endian, C-contiguous bytes, appended after the map (so a
tensor is copied once on each side). A tensor comes back as the library it left
as (a numpy array stays numpy, a torch tensor stays torch; `bfloat16` exists
only in torch). Decoded tensors are writable and own their memory.

For multipart sends (ZeroMQ) `tensor_to_frame` gives a small header map and a
zero-copy `memoryview` of the tensor's bytes, and `frame_to_tensor` rebuilds the
tensor from the two, validating the header against the buffer.

Invariant: `unpack` raises only `MessageError` (a `ValueError`) on any input that
is not a well-formed message of the expected kind and schema; it never returns
a partially checked record.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Mapping
from typing import Any, Union

import msgpack
import numpy as np
import torch

__all__ = [
    "MessageError",
    "pack",
    "pack_parts",
    "unpack",
    "tensor_to_frame",
    "frame_to_tensor",
    "DTYPES",
    "TENSOR_FRAME_SCHEMA",
]

Tensor = Union[np.ndarray, torch.Tensor]

MAGIC = b"AFDM"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sBI")  # magic, format version, msgpack body length
_EXT_NUMPY = 1  # ext code of a numpy array reference
_EXT_TORCH = 2  # ext code of a torch tensor reference
_MAX_NDIM = 32
TENSOR_FRAME_SCHEMA = 1

# Canonical dtype names on the wire -> (torch dtype, numpy dtype or None).
DTYPES: dict[str, tuple[torch.dtype, np.dtype | None]] = {
    "bool": (torch.bool, np.dtype("?")),
    "uint8": (torch.uint8, np.dtype("<u1")),
    "int8": (torch.int8, np.dtype("<i1")),
    "int16": (torch.int16, np.dtype("<i2")),
    "int32": (torch.int32, np.dtype("<i4")),
    "int64": (torch.int64, np.dtype("<i8")),
    "uint16": (torch.uint16, np.dtype("<u2")),
    "uint32": (torch.uint32, np.dtype("<u4")),
    "uint64": (torch.uint64, np.dtype("<u8")),
    "float16": (torch.float16, np.dtype("<f2")),
    "bfloat16": (torch.bfloat16, None),
    "float32": (torch.float32, np.dtype("<f4")),
    "float64": (torch.float64, np.dtype("<f8")),
    "complex64": (torch.complex64, np.dtype("<c8")),
    "complex128": (torch.complex128, np.dtype("<c16")),
}
_ITEMSIZE = {name: torch.empty((), dtype=t).element_size() for name, (t, _) in DTYPES.items()}
_TORCH_NAME = {t: name for name, (t, _) in DTYPES.items()}
_NUMPY_NAME = {f"{n.kind}{n.itemsize}": name for name, (_, n) in DTYPES.items() if n is not None}


class MessageError(ValueError):
    """A message could not be packed or is not a valid message of the expected kind/schema."""


def _dtype_name(t: Tensor) -> str:
    if isinstance(t, torch.Tensor):
        name = _TORCH_NAME.get(t.dtype)
    else:
        name = _NUMPY_NAME.get(f"{t.dtype.kind}{t.dtype.itemsize}") if t.dtype.fields is None else None
    if name is None:
        raise MessageError(f"unsupported tensor dtype {t.dtype}; supported: {sorted(DTYPES)}")
    return name


def _tensor_bytes(t: Tensor) -> memoryview:
    """The C-contiguous little-endian bytes of `t`, without a copy when already laid out so."""
    if isinstance(t, torch.Tensor):
        if t.requires_grad:
            t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if not t.is_contiguous():
            t = t.contiguous()
        a = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()
    else:
        a = np.ascontiguousarray(t)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
    return memoryview(a.reshape(-1).view(np.uint8))


def _build(name: str, shape: Any, lib: str, buf: Any) -> Tensor:
    """Rebuild a tensor from parts; `buf` is copied only when it is read-only."""
    if name not in DTYPES:
        raise MessageError(f"unknown tensor dtype {name!r}; supported: {sorted(DTYPES)}")
    if not isinstance(shape, (list, tuple)) or len(shape) > _MAX_NDIM or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise MessageError(f"bad tensor shape {shape!r}")
    try:
        mv = memoryview(buf)
        mv = mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")
    except TypeError as e:
        raise MessageError(f"tensor buffer is not a contiguous byte buffer: {e}") from e
    expected = math.prod(shape) * _ITEMSIZE[name]
    if expected != mv.nbytes:
        raise MessageError(f"tensor {name}{list(shape)} needs {expected} bytes, message has {mv.nbytes}")
    tdt, ndt = DTYPES[name]
    if lib == "numpy":
        if ndt is None:
            raise MessageError(f"dtype {name} has no numpy equivalent")
        if expected == 0:
            return np.empty(shape, dtype=ndt)
        return np.frombuffer(bytearray(mv) if mv.readonly else mv, dtype=ndt).reshape(shape)
    if lib != "torch":
        raise MessageError(f"unknown tensor library {lib!r}")
    if expected == 0:
        return torch.empty(shape, dtype=tdt)
    return torch.frombuffer(bytearray(mv) if mv.readonly else mv, dtype=tdt).reshape(shape)


def _check_envelope(record: Mapping[str, Any]) -> tuple[str, int]:
    kind, schema = record.get("kind"), record.get("schema")
    if not isinstance(kind, str) or not kind:
        raise MessageError(f"message needs a non-empty str 'kind', got {kind!r}")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise MessageError(f"message needs an int 'schema' >= 1, got {schema!r}")
    return kind, schema


def pack(record: Mapping[str, Any]) -> bytes:
    """Encode one message as one `bytes` (`pack_parts` joined: tensor bytes copied once).

    Raises:
        MessageError: missing envelope fields or a value that cannot be packed.
    """
    return b"".join(pack_parts(record))


def pack_parts(record: Mapping[str, Any]) -> list[bytes | memoryview]:
    """Encode one message as buffers to send back to back, without copying tensor bytes.

    Why: a 100 KB payload is copied once by `b"".join`; a sender that writes the
    parts itself (a socket's scatter write, one RESP bulk string of several
    parts) sends them with the kernel's copy only.

    Layout of the concatenation: `b"AFDM"`, a format byte, the u32 length of a
    msgpack map, the map, then the tensors' raw bytes back to back; each tensor
    in the map is a msgpack extension holding `[dtype, shape, offset, nbytes]`
    into that tail. The first part is the prefix and map; each further part is a
    view of one tensor's memory (or of its contiguous CPU copy): keep the
    tensors alive and unchanged until the parts are sent.

    Args:
        record: a map with str keys, a `kind` (str) and a `schema` (int >= 1); values
            are msgpack types, numpy arrays or torch tensors (any device; copied to CPU).

    Raises:
        MessageError: missing envelope fields or a value that cannot be packed.
    """
    if not isinstance(record, Mapping):
        raise MessageError(f"a message is a mapping, got {type(record).__name__}")
    _check_envelope(record)
    buffers: list[memoryview] = []
    offset = 0

    def default(obj: Any) -> Any:
        nonlocal offset
        if isinstance(obj, (torch.Tensor, np.ndarray)):
            name = _dtype_name(obj)
            buf = _tensor_bytes(obj)
            ref = msgpack.packb([name, list(obj.shape), offset, buf.nbytes])
            buffers.append(buf)
            offset += buf.nbytes
            return msgpack.ExtType(_EXT_TORCH if isinstance(obj, torch.Tensor) else _EXT_NUMPY, ref)
        if isinstance(obj, np.generic):  # numpy scalars: Python values; complex ones as 0-d arrays
            return default(np.asarray(obj)) if obj.dtype.kind == "c" else obj.item()
        raise MessageError(f"cannot pack a value of type {type(obj).__name__}")

    try:
        body = msgpack.packb(dict(record), default=default, use_bin_type=True)
    except MessageError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise MessageError(f"cannot pack {record.get('kind')!r} message: {e}") from e
    return [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(body)) + body, *buffers]


def unpack(data: bytes | bytearray | memoryview, *, expect_kind: str, schemas: Collection[int] = (1,)) -> dict[str, Any]:
    """Decode one message and check its envelope. Tensors come back writable, owning
    their memory (one copy out of `data`).

    Args:
        data: the bytes `pack` produced.
        expect_kind: the only `kind` accepted.
        schemas: the schema versions of that kind this reader understands.

    Raises:
        MessageError: foreign, truncated or corrupt bytes, another kind, an unknown
            schema version, an unknown dtype or a tensor whose bytes disagree with its shape.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageError(f"expected bytes, got {type(data).__name__}")
    try:
        mv = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
    except TypeError as e:
        raise MessageError(f"message buffer is not contiguous: {e}") from e
    if mv.nbytes < _PREFIX.size or bytes(mv[:4]) != MAGIC:
        raise MessageError(f"not an afd message (expected magic {MAGIC!r}, got {bytes(mv[:4])!r})")
    _, version, blen = _PREFIX.unpack_from(mv)
    if version != FORMAT_VERSION:
        raise MessageError(f"unsupported message format {version}; this reader understands {FORMAT_VERSION}")
    if blen > mv.nbytes - _PREFIX.size:
        raise MessageError(f"truncated message: body of {blen} bytes, {mv.nbytes - _PREFIX.size} present")
    tail = mv[_PREFIX.size + blen :]
    pos = 0

    def ext_hook(code: int, ref_bytes: bytes) -> Tensor:
        nonlocal pos
        if code not in (_EXT_NUMPY, _EXT_TORCH):
            raise MessageError(f"unknown msgpack extension type {code}")
        ref = msgpack.unpackb(ref_bytes)
        if not (isinstance(ref, list) and len(ref) == 4 and isinstance(ref[0], str) and ref[2] == pos and isinstance(ref[3], int)):
            raise MessageError(f"bad tensor reference {ref!r} (next tensor bytes start at {pos})")
        if ref[3] < 0 or pos + ref[3] > tail.nbytes:
            raise MessageError(f"tensor of {ref[3]} bytes at {pos} overruns the {tail.nbytes}-byte tail")
        pos += ref[3]
        return _build(ref[0], ref[1], "torch" if code == _EXT_TORCH else "numpy", tail[pos - ref[3] : pos])

    try:
        record = msgpack.unpackb(mv[_PREFIX.size : _PREFIX.size + blen], ext_hook=ext_hook, raw=False, strict_map_key=True)
    except MessageError:
        raise
    except Exception as e:  # noqa: BLE001 - msgpack raises many types on garbage
        raise MessageError(f"corrupt message body ({type(e).__name__}: {e})") from e
    if pos != tail.nbytes:
        raise MessageError(f"message has {tail.nbytes - pos} unreferenced trailing bytes")
    if not isinstance(record, dict):
        raise MessageError(f"a message is a msgpack map, got {type(record).__name__}")
    kind, schema = _check_envelope(record)
    if kind != expect_kind:
        raise MessageError(f"expected a {expect_kind!r} message, got kind {kind!r}")
    if schema not in schemas:
        raise MessageError(
            f"unsupported schema version {schema} for {kind!r} messages; this reader understands {sorted(schemas)}"
        )
    return record


def tensor_to_frame(t: Tensor) -> tuple[dict[str, Any], memoryview]:
    """Split a tensor into a header map and a zero-copy view of its bytes.

    The header is itself a message (`kind="tensor"`), so it can go through `pack`.
    The view aliases `t`'s memory when `t` is a C-contiguous CPU tensor: keep `t`
    alive and unchanged until the send completes.
    """
    if not isinstance(t, (torch.Tensor, np.ndarray)):
        raise MessageError(f"expected a torch tensor or numpy array, got {type(t).__name__}")
    name = _dtype_name(t)
    buf = _tensor_bytes(t)
    lib = "torch" if isinstance(t, torch.Tensor) else "numpy"
    header = {"kind": "tensor", "schema": TENSOR_FRAME_SCHEMA, "dtype": name, "shape": list(t.shape), "lib": lib, "nbytes": buf.nbytes}
    return header, buf


def frame_to_tensor(header: Mapping[str, Any], buffer: Any) -> Tensor:
    """Rebuild a tensor from `tensor_to_frame`'s parts.

    Zero-copy when `buffer` is writable (the tensor then aliases it); one copy when
    it is read-only (e.g. `bytes`).

    Raises:
        MessageError: a header of another kind/schema, an unknown dtype or a size mismatch.
    """
    if not isinstance(header, Mapping):
        raise MessageError(f"a tensor header is a mapping, got {type(header).__name__}")
    kind, schema = _check_envelope(header)
    if kind != "tensor" or schema != TENSOR_FRAME_SCHEMA:
        raise MessageError(f"expected a 'tensor' header of schema {TENSOR_FRAME_SCHEMA}, got {kind!r} v{schema}")
    try:
        mv = memoryview(buffer)
    except TypeError as e:
        raise MessageError(f"tensor buffer does not support the buffer protocol: {type(buffer).__name__}") from e
    if header.get("nbytes") != mv.nbytes:
        raise MessageError(f"tensor header says {header.get('nbytes')} bytes, buffer has {mv.nbytes}")
    name = header.get("dtype")
    if not isinstance(name, str):
        raise MessageError(f"bad tensor dtype {name!r}")
    return _build(name, header.get("shape"), header.get("lib", "torch"), mv)  # type: ignore[arg-type]
