"""The prompt-paired record (DESIGN.md §4) and its two wire messages.

A pair travels as two schema-versioned messages (see `afd_async.codec.msg`):

- `pair` (small): ids, prompt, versions, times, teacher reference and metadata;
  always inline in the stream entry, so a reader can inspect it cheaply.
- `pair_tensors` (large): the student latent and RGB rollout, tagged with the
  `pair_id` so a payload can never be matched to the wrong pair; inline in the
  entry or in a separate blob key, at the writer's choice.

The teacher clip is not copied into the pair: `teacher_ref` names it in a
`TeacherClipStore` (it is paid for once and shared by every re-roll).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional

import torch

from afd_async.codec.msg import MessageError, pack, pack_parts, unpack

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
    tensors = {
        "kind": TENSORS_KIND,
        "schema": PAIR_SCHEMA,
        "pair_id": pair.pair_id,
        "student_latent": pair.student_latent,
        "student_rgb": pair.student_rgb,
    }
    return pack(meta), pack_parts(tensors)


def decode_meta(data: bytes) -> dict[str, Any]:
    """The `pair` message as a dict (no tensors). Raises `MessageError`."""
    meta = unpack(data, expect_kind=PAIR_KIND, schemas=(PAIR_SCHEMA,))
    missing = [n for n in _META_FIELDS if n not in meta and n not in _OPTIONAL_FIELDS]
    if missing:
        raise MessageError(f"pair message lacks fields {missing}")
    return meta


def decode_pair(meta: Mapping[str, Any], tensors_data: bytes) -> Pair:
    """Join a decoded `pair` message with its `pair_tensors` bytes. Raises `MessageError`."""
    tensors = unpack(tensors_data, expect_kind=TENSORS_KIND, schemas=(PAIR_SCHEMA,))
    if tensors.get("pair_id") != meta.get("pair_id"):
        raise MessageError(f"payload belongs to pair {tensors.get('pair_id')!r}, not {meta.get('pair_id')!r}")
    kwargs = {n: meta[n] for n in _META_FIELDS if n in meta}
    try:
        return Pair(student_latent=tensors.get("student_latent"), student_rgb=tensors.get("student_rgb"), **kwargs)
    except (TypeError, ValueError) as e:
        raise MessageError(f"invalid pair record: {e}") from e
