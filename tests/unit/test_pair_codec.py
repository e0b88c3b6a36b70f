"""The pair messages' fast path: the generic codec's bytes and errors, and only `MessageError` on garbage."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from afd_async.codec.msg import MessageError, pack, pack_parts, unpack
from afd_async.replay.examples import make_pair, same_pair
from afd_async.replay.heap import keep_freed_heap
from afd_async.replay.pair import TENSORS_KIND, Pair, decode_meta, decode_pair, encode_pair


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_fast_path_messages_are_codec_messages_and_read_back(dtype: torch.dtype) -> None:
    pair = make_pair(3, payload_bytes=8192, latent_dtype=dtype, d_version=2)
    meta, parts = encode_pair(pair)
    assert any(isinstance(p, memoryview) for p in parts)  # tensors go out as views, uncopied
    data = b"".join(parts)
    generic = unpack(data, expect_kind=TENSORS_KIND)  # any reader of the codec reads them
    assert torch.equal(generic["student_latent"], pair.student_latent) and generic["pair_id"] == pair.pair_id
    assert unpack(meta, expect_kind="pair")["pair_id"] == pair.pair_id
    back = decode_pair(decode_meta(meta), data)
    assert same_pair(pair, back)
    back.student_latent.fill_(0)  # writable, and not the sender's memory
    back.student_rgb.fill_(0)
    assert not torch.equal(pair.student_rgb, back.student_rgb)


@pytest.mark.parametrize("pair_id", ["p", "pair-17", "x" * 40])
def test_a_received_bytearray_is_wrapped_aligned_without_a_copy(pair_id: str) -> None:
    pair = make_pair(1, payload_bytes=4096, latent_dtype=torch.float32, pair_id=pair_id)
    meta, parts = encode_pair(pair)
    assert len(parts[0]) % 16 == 0  # the tensor bytes start aligned
    received = bytearray(b"".join(parts))
    back = decode_pair(decode_meta(meta), received)
    assert same_pair(pair, back)
    start = np.frombuffer(received, np.uint8).ctypes.data
    assert back.student_latent.data_ptr() == start + len(parts[0])  # a view of the received buffer
    assert back.student_rgb.data_ptr() == start + len(parts[0]) + parts[1].nbytes


def test_generic_messages_and_misaligned_buffers_decode_too() -> None:
    pair = make_pair(2, payload_bytes=4096, latent_dtype=torch.float32)
    meta, _ = encode_pair(pair)
    plain = b"".join(pack_parts({"kind": TENSORS_KIND, "schema": 1, "pair_id": pair.pair_id,
                                 "student_latent": pair.student_latent, "student_rgb": pair.student_rgb}))
    for data in (plain, bytearray(plain)):  # no pad: as an older writer sent them; misaligned in a bytearray
        back = decode_pair(decode_meta(meta), data)
        assert same_pair(pair, back) and back.student_latent.data_ptr() % 4 == 0


def test_tensors_the_fast_path_does_not_take_go_through_the_codec() -> None:
    pair = make_pair(1, payload_bytes=4096)
    odd = Pair(**{**pair.__dict__, "student_latent": pair.student_latent.transpose(1, 2),  # not contiguous
                  "teacher_meta": {"latency_s": np.float32(0.5)}})  # a numpy scalar: the codec converts it
    meta, parts = encode_pair(odd)
    back = decode_pair(decode_meta(meta), b"".join(parts))
    assert torch.equal(back.student_latent, odd.student_latent) and back.teacher_meta == {"latency_s": 0.5}


def test_garbage_is_a_message_error_never_another_exception() -> None:
    pair = make_pair(0, payload_bytes=2048)
    meta, parts = encode_pair(pair)
    data = b"".join(parts)
    rng = random.Random(0)
    for _ in range(3000):
        buf = bytearray(data if rng.random() < 0.7 else meta)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(min(len(buf), 200))  # the headers, where a flip changes the layout
            buf[i] = rng.randrange(256)
        if rng.random() < 0.3:
            del buf[rng.randrange(len(buf)):]
        try:
            decode_pair(decode_meta(meta), bytes(buf))
            decode_meta(bytes(buf))
        except MessageError:
            pass


def test_errors_are_the_generic_codecs() -> None:
    pair = make_pair(0)
    meta, parts = encode_pair(pair)
    data = b"".join(parts)
    with pytest.raises(MessageError, match="needs .* bytes|overruns|trailing"):
        decode_pair(decode_meta(meta), data[:-3])
    with pytest.raises(MessageError, match="belongs to pair 'pair-0', not 'pair-9'"):
        decode_pair(decode_meta(encode_pair(make_pair(9))[0]), data)
    with pytest.raises(MessageError, match="unsupported schema version 2"):
        decode_meta(pack({**unpack(meta, expect_kind="pair"), "schema": 2}))
    with pytest.raises(MessageError, match="lacks fields"):
        decode_meta(pack({"kind": "pair", "schema": 1, "pair_id": "p"}))


def test_keep_freed_heap_is_idempotent() -> None:
    first = keep_freed_heap()
    assert keep_freed_heap() == first
