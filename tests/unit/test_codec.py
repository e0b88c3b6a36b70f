"""MP4 codec: round trip, verified decode, decode-bomb caps, fuzzing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afd_async.video.clip import Clip
from afd_async.video.codec import VideoDecodeError, decode_mp4, encode_mp4

CAPS = dict(max_frames=200, max_pixels=256 * 256, max_bytes=1 << 22)


def _smooth_clip(t: int = 10, h: int = 32, w: int = 48, fps: float = 24.0) -> Clip:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, ..., 0] = 40 + 150 * xx / w + 2 * i
        frames[i, ..., 1] = 60 + 120 * yy / h
        frames[i, ..., 2] = 100 + 50 * np.sin((xx + i) / 6.0)
    return Clip(frames=frames, fps=fps)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def mp4() -> bytes:
    return encode_mp4(_smooth_clip())


def test_round_trip_psnr_shape_fps(mp4: bytes) -> None:
    clip = _smooth_clip()
    out = decode_mp4(mp4, **CAPS)
    assert out.frames.shape == clip.frames.shape and out.frames.dtype == np.uint8
    assert out.fps == pytest.approx(24.0)
    assert _psnr(out.frames, clip.frames) > 38.0


def test_encode_is_repeatable() -> None:
    """The same clip gives the same bytes, also from concurrent encoders: the staleness-0 oracle's
    sync loop re-encodes teacher clips and must see the pixels the local teacher server sent.
    With libx264's mbtree on, 1 to 5 of 40 encodes of this clip differed."""
    from concurrent.futures import ThreadPoolExecutor

    from afd_async.physics import load_prompt_suite, render_prompt

    clip, _ = render_prompt(load_prompt_suite("train")[0].prompt, seed=1, height=64, width=96, fps=24.0, seconds=2.0)
    with ThreadPoolExecutor(2) as pool:
        files = list(pool.map(lambda _: encode_mp4(clip), range(40)))
    assert len(set(files)) == 1


def test_odd_size_is_padded_then_cropped_back() -> None:
    clip = _smooth_clip(t=3, h=17, w=31, fps=12.5)
    out = decode_mp4(encode_mp4(clip), **CAPS)
    assert out.frames.shape == (3, 17, 31, 3)
    assert out.fps == pytest.approx(12.5)
    assert _psnr(out.frames, clip.frames) > 34.0


@pytest.mark.parametrize("cut", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_is_rejected(mp4: bytes, cut: float) -> None:
    with pytest.raises(VideoDecodeError):
        decode_mp4(mp4[: int(len(mp4) * cut)], **CAPS)


def test_corrupt_header_and_garbage_are_rejected(mp4: bytes) -> None:
    bad = bytearray(mp4)
    pos = mp4.find(b"moov")
    bad[pos : pos + 4] = b"\x00\xff\x00\xff"
    for data in (bytes(bad), b"\x00" * 1000, b"not a video at all", np.random.default_rng(0).bytes(4096)):
        with pytest.raises(VideoDecodeError):
            decode_mp4(data, **CAPS)


def test_corrupt_bitstream_is_rejected(mp4: bytes) -> None:
    """Garbage in the coded frames is caught (err_detect=explode), not concealed.

    The garbage goes after x264's SEI text (the encoder's settings string, which
    a decoder rightly ignores) and before the `moov` box.
    """
    start = mp4.find(b"\x00", mp4.find(b"x264 - core")) + 4
    end = mp4.find(b"moov") - 4
    rng = np.random.default_rng(1)
    for pos in np.linspace(start, end - 64, 4).astype(int):
        bad = bytearray(mp4)
        bad[pos : pos + 64] = rng.bytes(64)
        with pytest.raises(VideoDecodeError):
            decode_mp4(bytes(bad), **CAPS)


def test_byte_cap_and_empty(mp4: bytes) -> None:
    with pytest.raises(VideoDecodeError, match="empty"):
        decode_mp4(b"", **CAPS)
    with pytest.raises(VideoDecodeError, match="cap"):
        decode_mp4(mp4, max_frames=200, max_pixels=1 << 20, max_bytes=len(mp4) - 1)


def test_decode_bomb_large_dimensions_rejected_before_decode() -> None:
    """A ~5 kB file declaring 4096x4096 is refused from its header, not decoded."""
    bomb = encode_mp4(Clip(frames=np.zeros((1, 4096, 4096, 3), np.uint8), fps=1.0))
    assert len(bomb) < 20_000
    with pytest.raises(VideoDecodeError, match="declared size 4096x4096"):
        decode_mp4(bomb, max_frames=10, max_pixels=1 << 20, max_bytes=1 << 20)


def test_too_many_frames_rejected_from_declaration() -> None:
    many = encode_mp4(Clip(frames=np.zeros((60, 16, 16, 3), np.uint8), fps=30.0))
    with pytest.raises(VideoDecodeError, match="declares 60 frames"):
        decode_mp4(many, max_frames=20, max_pixels=1 << 20, max_bytes=1 << 20)


def test_no_video_stream_is_rejected() -> None:
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        decode_mp4(buf.getvalue(), **CAPS)


_VALID = encode_mp4(_smooth_clip(t=4, h=16, w=16))


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        if not data:
            break
    return bytes(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=2048), _mutated()))
def test_fuzz_only_video_decode_error(data: bytes) -> None:
    try:
        out = decode_mp4(data, max_frames=16, max_pixels=64 * 64, max_bytes=1 << 16)
    except VideoDecodeError:
        return
    assert out.frames.dtype == np.uint8 and out.frames.ndim == 4 and out.num_frames <= 16
