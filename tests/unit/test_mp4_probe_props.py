"""Property tests of the MP4 header probe (`video.probe`): it raises only `Mp4ProbeError`
on any bytes, and reports what `encode_mp4` wrote (size, frames, fps) for any clip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afd_async.video.clip import Clip
from afd_async.video.codec import encode_mp4
from afd_async.video.probe import Mp4ProbeError, check_boxes, probe_mp4

_VALID = encode_mp4(Clip(frames=np.full((3, 16, 24, 3), 90, np.uint8), fps=10.0))


def _probe_or_error(data: bytes) -> None:
    try:
        info = probe_mp4(data)
    except Mp4ProbeError as e:
        assert str(e)  # every refusal says why
        return
    assert info.width >= 0 and info.height >= 0 and info.frames >= 0 and info.fps >= 0.0


@st.composite
def _boxes(draw: st.DrawFn) -> bytes:
    """Byte strings that look like box trees (valid headers, random sizes/types/payloads)."""
    out = b""
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from([b"moov", b"trak", b"mdia", b"hdlr", b"stsd", b"stsz", b"moof", b"traf",
                                     b"trun", b"tfhd", b"ftyp", b"mdat", b"free", b"\x00\x01ab"]))
        payload = draw(st.binary(max_size=48))
        size = draw(st.one_of(st.just(8 + len(payload)), st.integers(0, 80)))
        out += size.to_bytes(4, "big") + kind + payload
    return out


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["byte", "u32", "cut", "insert"]))
        if op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "u32":  # box sizes, counts and dimensions are 32-bit fields
            data[pos : pos + 4] = draw(st.sampled_from([0, 1, 7, 8, 0xFFFFFFFF, 0x7FFFFFFF, 65535])).to_bytes(4, "big")
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 32))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), _boxes(), _mutated()))
def test_arbitrary_bytes_raise_only_probe_error(data: bytes) -> None:
    _probe_or_error(data)
    try:
        check_boxes(data)
    except Mp4ProbeError:
        pass


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=st.integers(1, 9), h=st.integers(2, 40), w=st.integers(2, 40),
       fps=st.sampled_from([8.0, 12.5, 24.0, 30.0, 60.0]))
def test_probe_reports_what_the_encoder_wrote(t: int, h: int, w: int, fps: float) -> None:
    info = probe_mp4(encode_mp4(Clip(frames=np.zeros((t, h, w, 3), np.uint8), fps=fps)))
    assert (info.width, info.height) == (w + w % 2, h + h % 2)  # coded size: odd sizes are padded to even
    assert info.frames == t and info.codec == "avc1" and not info.fragmented
    assert info.fps == pytest.approx(fps, rel=1e-3)


def test_truncation_anywhere_is_refused() -> None:
    for cut in range(0, len(_VALID), max(1, len(_VALID) // 97)):
        with pytest.raises(Mp4ProbeError):
            probe_mp4(_VALID[:cut])


def test_hostile_structure_is_bounded() -> None:
    """A million empty boxes, or boxes nested past the depth limit, are refused quickly."""
    with pytest.raises(Mp4ProbeError, match="more than"):
        probe_mp4(b"\x00\x00\x00\x08free" * 200_000)
    nested = b"\x00\x00\x00\x08moov"
    for _ in range(20):
        nested = (8 + len(nested)).to_bytes(4, "big") + b"trak" + nested
    with pytest.raises(Mp4ProbeError):
        probe_mp4((8 + len(nested)).to_bytes(4, "big") + b"moov" + nested)
