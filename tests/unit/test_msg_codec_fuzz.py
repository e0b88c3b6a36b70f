"""Fuzz: `unpack` raises only `MessageError` on garbage, and round-trips generated records."""

from __future__ import annotations

import msgpack
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from afd_async.codec import MessageError, pack, unpack

GOOD = pack({"kind": "pair", "schema": 1, "t": torch.arange(12, dtype=torch.float16).reshape(3, 4), "s": "x"})

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


def _unpack_or_error(data: bytes) -> None:
    try:
        unpack(data, expect_kind="pair")
    except MessageError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_raise_only_message_error(data: bytes) -> None:
    _unpack_or_error(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 255), st.integers(0, len(GOOD)))
def test_mutated_and_truncated_messages_raise_only_message_error(pos: int, byte: int, cut: int) -> None:
    mutated = bytearray(GOOD)
    mutated[pos] = byte
    _unpack_or_error(bytes(mutated))
    _unpack_or_error(GOOD[:cut])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=6).filter(lambda k: k not in ("kind", "schema")), values, max_size=5))
def test_generated_records_round_trip(body: dict) -> None:
    rec = {"kind": "pair", "schema": 1, **body}
    assert unpack(pack(rec), expect_kind="pair") == rec


@settings(max_examples=150, deadline=None)
@given(values, st.binary(max_size=16))
def test_foreign_msgpack_raises_only_message_error(value: object, tail: bytes) -> None:
    _unpack_or_error(msgpack.packb(value))
    body = msgpack.packb(value)
    _unpack_or_error(b"AFDM\x01" + len(body).to_bytes(4, "little") + body + tail)  # framed foreign bodies
