"""The prompt-paired record (DESIGN.md §4) and its two wire messages.

A pair travels as two schema-versioned messages (see `afd_async.codec.msg`):

- `pair` (small): ids, prompt, versions, times, teacher reference and metadata;
  always inline in the stream entry, so a reader can inspect it cheaply.
- `pair_tensors` (large): the student latent and RGB rollout, tagged with the
  `pair_id` so a payload can never be matched to the wrong pair; inline in the
  entry or in a separate blob key, at the writer's choice.

The teacher clip is not copied into the pair: `teacher_ref` names it in a
`TeacherClipStore` (it is paid for once and shared by every re-roll).

Both messages are ordinary `codec.msg` messages, but the replay moves thousands
a second, so `encode_pair` / `decode_pair` / `decode_meta` take a fast path for
the layout they write themselves (the generic codec's Python hooks cost ~40 µs
a pair, `benchmarks/bench_replay.py`). Anything else (a tensor on another device,
a foreign or corrupt message) goes through `codec.msg` unchanged, so the bytes
and the errors are the generic codec's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional

import msgpack
import numpy as np
import torch

from afd_async.codec.msg import _PREFIX, FORMAT_VERSION, MAGIC, MessageError, pack, pack_parts, unpack

PAIR_SCHEMA = 1
PAIR_KIND = "pair"
TENSORS_KIND = "pair_tensors"
_LATENT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@dataclass(frozen=True, eq=False)
class Pair:
    """One student rollout paired with its prompt's teacher clip.

    Attributes:
        pair_id: unique id of this rollout (the dedupe key; a retried write keeps it).
        prompt_id: id of the prompt; rows with one prompt id form a K-rollout group.
        prompt: the prompt text.
        teacher_ref: key of the teacher clip in the teacher cache (`TeacherClipStore`).
        student_latent: `(C, F, H, W)` clean rollout latent x̂0, float16/bfloat16/float32.
        student_rgb: `(T, H, W, 3)` uint8 decoded student video (what D scores).
        policy_version: version of θ_old that produced the rollout (stamped by the actor).
        actor_id: the student actor that rolled out.
        seed: the rollout's noise seed.
        created_at: unix time the rollout finished.
        teacher_requested_at: unix time the teacher clip was requested.
        d_version: discriminator version the actor knew of, if any.
        teacher_meta: provider, model, latency of the teacher clip (msgpack-able values).
        group: index of the rollout group (one planned learner batch) this pair belongs to;
            None for pairs written outside a plan.
        group_row: this pair's row in its group.
        group_size: rows in the group (the feeder collates a batch once all have arrived).
    """

    pair_id: str
    prompt_id: str
    prompt: str
    teacher_ref: str
    student_latent: torch.Tensor
    student_rgb: torch.Tensor
    policy_version: int
    actor_id: str
    seed: int
    created_at: float
    teacher_requested_at: float
    d_version: Optional[int] = None
    teacher_meta: Mapping[str, Any] = field(default_factory=dict)
    group: Optional[int] = None
    group_row: Optional[int] = None
    group_size: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("pair_id", "prompt_id", "teacher_ref", "actor_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"Pair.{name} must be a non-empty str, got {value!r}")
        if not isinstance(self.prompt, str):
            raise ValueError(f"Pair.prompt must be a str, got {type(self.prompt).__name__}")
        lat, rgb = self.student_latent, self.student_rgb
        if not isinstance(lat, torch.Tensor) or lat.ndim != 4 or lat.dtype not in _LATENT_DTYPES:
            raise ValueError(f"student_latent must be a (C, F, H, W) float16/bfloat16/float32 tensor, got {_desc(lat)}")
        if not isinstance(rgb, torch.Tensor) or rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
            raise ValueError(f"student_rgb must be a (T, H, W, 3) uint8 tensor, got {_desc(rgb)}")
        for name in ("policy_version", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"Pair.{name} must be an int, got {value!r}")
        if self.policy_version < 0:
            raise ValueError(f"policy_version must be >= 0, got {self.policy_version}")
        if self.d_version is not None and (not isinstance(self.d_version, int) or self.d_version < 0):
            raise ValueError(f"d_version must be None or an int >= 0, got {self.d_version!r}")
        for name in ("created_at", "teacher_requested_at"):
            if not isinstance(getattr(self, name), (int, float)) or not math.isfinite(getattr(self, name)):
                raise ValueError(f"Pair.{name} must be a finite unix time, got {getattr(self, name)!r}")
        if not isinstance(self.teacher_meta, Mapping):
            raise ValueError("teacher_meta must be a mapping")
        grouping = (self.group, self.group_row, self.group_size)
        if any(v is not None for v in grouping):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in grouping):
                raise ValueError(f"group, group_row and group_size must be set together as ints, got {grouping}")
            if not (self.group >= 0 and 0 <= self.group_row < self.group_size):
                raise ValueError(f"need group >= 0 and 0 <= group_row < group_size, got {grouping}")

    @property
    def payload_nbytes(self) -> int:
        """Bytes of the two tensors (what dominates the record's size)."""
        lat, rgb = self.student_latent, self.student_rgb
        return lat.numel() * lat.element_size() + rgb.numel() * rgb.element_size()


def _desc(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} {tuple(t.shape)}"
    return type(t).__name__


_OPTIONAL_FIELDS = ("d_version", "teacher_meta", "group", "group_row", "group_size")
_META_FIELDS = tuple(f.name for f in fields(Pair) if f.name not in ("student_latent", "student_rgb"))


def encode_pair(pair: Pair) -> tuple[bytes, list[bytes | memoryview]]:
    """`(meta, tensors)` messages of `pair`: `meta` as bytes, `tensors` as the parts of
    `codec.msg.pack_parts` (views of the pair's tensors: the writer sends them uncopied;
    `b"".join(tensors)` is the message as bytes)."""
    meta: dict[str, Any] = {"kind": PAIR_KIND, "schema": PAIR_SCHEMA}
    for name in _META_FIELDS:
        meta[name] = getattr(pair, name)
    meta["teacher_meta"] = dict(pair.teacher_meta)
    try:
        body = _packb(meta)
        meta_bytes = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(body)) + body
    except (TypeError, ValueError, OverflowError):  # e.g. numpy scalars in teacher_meta: the codec converts them
        meta_bytes = pack(meta)
    parts = _pack_tensors_fast(pair)
    if parts is None:
        parts = pack_parts({"kind": TENSORS_KIND, "schema": PAIR_SCHEMA, "pair_id": pair.pair_id,
                            "student_latent": pair.student_latent, "student_rgb": pair.student_rgb})
    return meta_bytes, parts


def decode_meta(data: bytes) -> dict[str, Any]:
    """The `pair` message as a dict (no tensors). Raises `MessageError`."""
    meta = _unpack_plain(data, PAIR_KIND)
    if meta is None:
        meta = unpack(data, expect_kind=PAIR_KIND, schemas=(PAIR_SCHEMA,))
    missing = [n for n in _REQUIRED_FIELDS if n not in meta]
    if missing:
        raise MessageError(f"pair message lacks fields {missing}")
    return meta


def decode_pair(meta: Mapping[str, Any], tensors_data: bytes) -> Pair:
    """Join a decoded `pair` message with its `pair_tensors` bytes. Raises `MessageError`.

    The tensors are writable and own their memory (one copy out of `tensors_data`).
    """
    fast = _unpack_tensors_fast(tensors_data)
    if fast is None:
        tensors = unpack(tensors_data, expect_kind=TENSORS_KIND, schemas=(PAIR_SCHEMA,))
        fast = (tensors.get("pair_id"), tensors.get("student_latent"), tensors.get("student_rgb"))
    pair_id, latent, rgb = fast
    if pair_id != meta.get("pair_id"):
        raise MessageError(f"payload belongs to pair {pair_id!r}, not {meta.get('pair_id')!r}")
    kwargs = {n: meta[n] for n in _META_FIELDS if n in meta}
    try:
        return Pair(student_latent=latent, student_rgb=rgb, **kwargs)
    except (TypeError, ValueError) as e:
        raise MessageError(f"invalid pair record: {e}") from e


# -- the fast path ----------------------------------------------------------------------------
# Same bytes as `codec.msg.pack_parts` of {"kind", "schema", "pair_id", "student_latent", "student_rgb"}:
# prefix, msgpack map whose tensors are ext 2 (torch) holding [dtype, shape, offset, nbytes], tensor bytes.

_REQUIRED_FIELDS = tuple(n for n in _META_FIELDS if n not in _OPTIONAL_FIELDS)
_TENSORS_KEYS = {"kind", "schema", "pair_id", "student_latent", "student_rgb"}
_TENSORS_KEYS_PADDED = {*_TENSORS_KEYS, "pad"}
_ALIGN = 16
_FIXMAP_6 = b"\x86"  # msgpack fixmap of 6 entries (the 5 fields and "pad")
_PAD_ENTRY = msgpack.packb("pad") + b"\xc4"  # the key, then a bin 8 header whose length byte follows
_EXT_TORCH = 2
_WIRE_NAME = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32", torch.uint8: "uint8"}
_NP_DTYPE = {"float16": np.dtype("<f2"), "bfloat16": np.dtype("<i2"), "float32": np.dtype("<f4"), "uint8": np.dtype("u1")}
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "uint8": 1}


def _packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _tensor_view(t: torch.Tensor) -> Optional[tuple[str, memoryview]]:
    """`(wire dtype, bytes view)` of a CPU, contiguous, grad-free tensor of a pair dtype; None otherwise."""
    name = _WIRE_NAME.get(t.dtype)
    if name is None or t.requires_grad or t.device.type != "cpu" or not t.is_contiguous() or t.numel() == 0:
        return None
    a = (t.view(torch.int16) if name == "bfloat16" else t).numpy()
    return name, memoryview(a).cast("B")


def _pack_tensors_fast(pair: Pair) -> Optional[list[bytes | memoryview]]:
    lat, rgb = _tensor_view(pair.student_latent), _tensor_view(pair.student_rgb)
    if lat is None or rgb is None:
        return None
    n0, n1 = lat[1].nbytes, rgb[1].nbytes
    record = {
        "kind": TENSORS_KIND, "schema": PAIR_SCHEMA, "pair_id": pair.pair_id,
        "student_latent": msgpack.ExtType(_EXT_TORCH, _packb([lat[0], list(pair.student_latent.shape), 0, n0])),
        "student_rgb": msgpack.ExtType(_EXT_TORCH, _packb([rgb[0], list(pair.student_rgb.shape), n0, n1])),
    }
    body = _packb(record)
    # A 6th entry, "pad" (ignored by every reader), puts the tensor bytes at a multiple of 16 from the message
    # start, so a reader that receives the message into its own buffer wraps the tensors aligned, without a
    # copy. Appended to the packed map (a fixmap: its first byte holds the count) instead of packing twice.
    pad = (-(_PREFIX.size + len(body) + len(_PAD_ENTRY) + 1)) % _ALIGN
    body = b"".join((_FIXMAP_6, memoryview(body)[1:], _PAD_ENTRY, bytes((pad,)), bytes(pad)))
    return [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(body)) + body, lat[1], rgb[1]]


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError("extension type")


def _unpack_plain(data: Any, kind: str) -> Optional[dict[str, Any]]:
    """A tensor-free message of `kind` at schema `PAIR_SCHEMA`; None for anything else (the caller then
    asks `codec.msg.unpack`, which accepts or explains)."""
    if not isinstance(data, bytes) or len(data) < _PREFIX.size or data[:4] != MAGIC:
        return None
    _, version, blen = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION or blen != len(data) - _PREFIX.size:
        return None
    try:
        record = msgpack.unpackb(memoryview(data)[_PREFIX.size:], ext_hook=_no_ext, raw=False, strict_map_key=True)
    except Exception:  # noqa: BLE001 - garbage: the generic path names the error
        return None
    if type(record) is not dict or record.get("kind") != kind or type(record.get("schema")) is not int \
            or record["schema"] != PAIR_SCHEMA:
        return None
    return record


def _unpack_tensors_fast(data: Any) -> Optional[tuple[str, torch.Tensor, torch.Tensor]]:
    """`(pair_id, latent, rgb)` of a `pair_tensors` message in the layout `_pack_tensors_fast` writes;
    None for any other input (the generic path then decodes it or says what is wrong).

    `bytes` are copied once; a `bytearray` is taken over: the tensors are views of it (copied
    only where a tensor would start misaligned for its dtype).
    """
    kind = type(data)
    if (kind is not bytes and kind is not bytearray) or len(data) < _PREFIX.size or data[:4] != MAGIC:
        return None
    _, version, blen = _PREFIX.unpack_from(data)
    tail = _PREFIX.size + blen
    if version != FORMAT_VERSION or tail > len(data):
        return None
    try:
        rec = msgpack.unpackb(memoryview(data)[_PREFIX.size:tail], raw=False, strict_map_key=True)
        if type(rec) is not dict or (rec.keys() != _TENSORS_KEYS and rec.keys() != _TENSORS_KEYS_PADDED) \
                or rec["kind"] != TENSORS_KIND \
                or type(rec["schema"]) is not int or rec["schema"] != PAIR_SCHEMA or type(rec["pair_id"]) is not str:
            return None
        lat_name, lat_shape, lat_n = _ref(rec["student_latent"], 0)
        rgb_name, rgb_shape, rgb_n = _ref(rec["student_rgb"], lat_n)
    except Exception:  # noqa: BLE001 - any other layout or garbage: the generic path decides
        return None
    if tail + lat_n + rgb_n != len(data):
        return None
    if kind is bytes:
        buf, base = bytearray(memoryview(data)[tail:]), 0  # the one copy: bytes are read-only
    else:
        buf, base = data, tail
    return rec["pair_id"], _view(buf, lat_name, lat_shape, base), _view(buf, rgb_name, rgb_shape, base + lat_n)


def _view(buf: bytearray, name: str, shape: list[int], offset: int) -> torch.Tensor:
    """A tensor over `buf` from `offset` (numpy builds the view: half the cost of torch's argument parsing)."""
    a = np.frombuffer(buf, _NP_DTYPE[name], math.prod(shape), offset)
    if not a.flags.aligned:
        a = a.copy()
    t = torch.from_numpy(a.reshape(shape))
    return t.view(torch.bfloat16) if name == "bfloat16" else t


def _ref(ext: Any, offset: int) -> tuple[str, list[int], int]:
    """`(dtype, shape, nbytes)` of a tensor reference that starts at `offset`; raises on any other value."""
    if type(ext) is not msgpack.ExtType or ext.code != _EXT_TORCH:
        raise ValueError("not a torch tensor reference")
    name, shape, off, nbytes = msgpack.unpackb(ext.data)
    if name not in _ITEMSIZE or type(shape) is not list or not 0 < len(shape) <= 8 \
            or not all(type(d) is int and d >= 0 for d in shape) or type(off) is not int or off != offset \
            or type(nbytes) is not int or nbytes <= 0 or math.prod(shape) * _ITEMSIZE[name] != nbytes:
        raise ValueError("not a pair tensor")
    return name, shape, nbytes
