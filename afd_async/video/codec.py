"""MP4 (H.264) encode and *verified* decode of `Clip`s (DESIGN.md §4).

Teacher clips cross the network as MP4. Bytes from a provider are untrusted:
they may be empty, truncated by a dropped connection, corrupted, or a
"decode bomb" (a tiny file that declares a huge frame size or frame count).
`decode_mp4` therefore reads what the container *declares* with our own header
probe (`probe.probe_mp4`: no FFmpeg, bounded work) and checks size, frame
count and frames x pixels against the caller's caps before FFmpeg sees the
bytes; opens FFmpeg with its `max_pixels` decoder cap (opening a file already
decodes a frame to probe it, and the bitstream's size may differ from the
container's: a 14 kB file declaring 16x16 in its sample entry but 8192x8192 in
its SPS made FFmpeg allocate ~150 MB on open); re-checks the frames x pixels budget
with the bitstream's own size; stops decoding as soon as a cap is
exceeded, asks the H.264 decoder to fail on bitstream errors instead of
concealing them (`err_detect=explode`), and checks that the number of frames
decoded matches the number the container declares. Every failure is a
`VideoDecodeError` with a reason, so callers classify one exception type
(`ErrorClass.CORRUPT_RESULT`) and never see PyAV/FFmpeg internals.

Odd frame sizes cannot be encoded as yuv420p, so `encode_mp4` pads them by
edge replication to even sizes and records the true size in the container's
`comment` tag (`afd:crop=WxH`); `decode_mp4` crops it back. Files from other
encoders have no such tag and are returned at their coded display size.
"""

from __future__ import annotations

import io
import re
from fractions import Fraction

import av
import numpy as np

from afd_async.video.clip import Clip
from afd_async.video.errors import VideoDecodeError
from afd_async.video.probe import Mp4Info, probe_mp4

__all__ = ["VideoDecodeError", "check_declared", "decode_mp4", "encode_mp4"]

_CROP_TAG = re.compile(r"^afd:crop=(\d{1,5})x(\d{1,5})$")


def encode_mp4(clip: Clip, *, crf: int = 18) -> bytes:
    """Encode a clip as H.264 (yuv420p) in an MP4 container, in memory.

    The bytes are a pure function of the clip: libx264's macroblock-tree rate control
    (`mbtree`, on in every preset) gives different files for the same frames from one call
    to the next in this build (PyAV 18 / libavcodec 62: 1 to 5 of 40 encodes differ, with
    one thread or many; `asm=0` is repeatable, so it is the SIMD path). It is off here, so a
    teacher clip made by the local server and the same clip made by `afd sync`
    (`train.sync_teacher_codec`) are the same pixels and the staleness-0 oracle compares
    like with like (`tests/unit/test_codec.py::test_encode_is_repeatable`). With it off the
    files are ~8% larger at the same crf, and ~1 dB closer to the source.

    Args:
        clip: RGB uint8 `(T, H, W, 3)` frames and fps.
        crf: x264 constant rate factor (0 = lossless luma, 18 = visually
            lossless, 51 = worst). Chroma is subsampled 2x2 regardless.

    Returns:
        The MP4 file as bytes (moov atom at the end: written in one pass).
    """
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be in [0, 51], got {crf}")
    frames = clip.frames
    h, w = clip.height, clip.width
    ph, pw = h + (h % 2), w + (w % 2)
    if (ph, pw) != (h, w):  # yuv420p needs even sizes; replicate the edge, crop on decode
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        container.metadata["comment"] = f"afd:crop={w}x{h}"
        rate = Fraction(clip.fps).limit_denominator(1001)
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = pw, ph
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": "mbtree=0"}  # repeatable: see above
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def decode_mp4(data: bytes, *, max_frames: int, max_pixels: int, max_bytes: int,
               max_total_pixels: int | None = None) -> Clip:
    """Decode and verify untrusted MP4 bytes into a `Clip`.

    Args:
        data: the file.
        max_frames: the most frames accepted (declared or decoded).
        max_pixels: the most pixels per frame (width x height) accepted.
        max_bytes: the largest file accepted.
        max_total_pixels: the most pixels of the whole clip (frames x width x height, i.e. the
            decoded size / 3 bytes); None: `max_frames * max_pixels`.

    Returns:
        RGB uint8 `(T, H, W, 3)` frames and the stream's average frame rate.

    Raises:
        VideoDecodeError: empty, too large, not an MP4, no video stream,
            declared or decoded geometry beyond the caps, bitstream errors,
            or fewer frames than the container declares (truncation).
    """
    if min(max_frames, max_pixels, max_bytes) < 1 or (max_total_pixels is not None and max_total_pixels < 1):
        raise ValueError("max_frames, max_pixels, max_bytes and max_total_pixels must be >= 1")
    budget = max_frames * max_pixels if max_total_pixels is None else max_total_pixels
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise VideoDecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise VideoDecodeError("empty video data")
    if len(data) > max_bytes:
        raise VideoDecodeError(f"video is {len(data)} bytes, more than the cap of {max_bytes}")
    data = bytes(data)
    info = probe_mp4(data)
    check_declared(info, max_frames=max_frames, max_pixels=max_pixels, max_total_pixels=budget)
    try:
        return _decode_checked(data, info, max_frames, max_pixels, budget)
    except VideoDecodeError:
        raise
    except (av.FFmpegError, EOFError) as exc:
        raise VideoDecodeError(f"corrupt or truncated MP4: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - untrusted input: every other failure is still "bad video"
        raise VideoDecodeError(f"unreadable MP4: {type(exc).__name__}: {exc}") from None


def check_declared(info: Mp4Info, *, max_frames: int, max_pixels: int, max_total_pixels: int) -> None:
    """Refuse a decode bomb from the container's declarations alone (nothing decoded yet).

    Raises:
        VideoDecodeError: no samples, an invalid size, or a size, frame count or
            frames x pixels beyond the caps.
    """
    w, h, n = info.width, info.height, info.frames
    if w < 1 or h < 1:
        raise VideoDecodeError(f"video sample entry declares an invalid size {w}x{h}")
    if w * h > max_pixels:
        raise VideoDecodeError(f"declared size {w}x{h} exceeds the cap of {max_pixels} pixels")
    if n < 1:
        raise VideoDecodeError("the video track declares no samples")
    if n > max_frames:
        raise VideoDecodeError(f"declares {n} frames, more than the cap of {max_frames}")
    if n * w * h > max_total_pixels:
        raise VideoDecodeError(f"declares {n} frames of {w}x{h} = {n * w * h} pixels, more than the cap of "
                               f"{max_total_pixels}")


def _round64(n: int) -> int:
    return -(-max(int(n), 1) // 64) * 64


def _decode_checked(data: bytes, info: Mp4Info, max_frames: int, max_pixels: int, budget: int) -> Clip:
    """The decode proper; may raise FFmpeg errors, which the caller wraps."""
    # FFmpeg's own cap binds its probe decode at open (avformat_find_stream_info) and every frame. FFmpeg
    # checks its *allocation* size, the declared size rounded up to 64 pixels (96x96 allocates 128x96), so the
    # cap it gets is the declared size so rounded: a bitstream larger than its sample entry is still refused,
    # and our exact check of the declared size (check_declared, above) stays the binding one.
    ffmpeg_cap = str(max(max_pixels, _round64(info.width) * _round64(info.height)))
    with av.open(io.BytesIO(data), mode="r", format="mp4", options={"max_pixels": ffmpeg_cap}) as container:
        if not container.streams.video:
            raise VideoDecodeError("no video stream in the container")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width < 1 or height < 1:
            raise VideoDecodeError(f"video stream declares an invalid size {width}x{height}")
        if width * height > max_pixels:  # decode bomb: refuse before allocating a frame
            raise VideoDecodeError(f"declared size {width}x{height} exceeds the cap of {max_pixels} pixels")
        if info.frames * width * height > budget:  # the bitstream's size may differ from the sample entry's
            raise VideoDecodeError(f"{info.frames} frames of {width}x{height} (the container declares "
                                   f"{info.width}x{info.height}) exceed the cap of {budget} pixels")
        declared = int(stream.frames or 0)
        if declared > max_frames or declared * width * height > budget:
            raise VideoDecodeError(f"declares {declared} frames, more than the cap of {max_frames}")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if not (0.0 < fps <= 1000.0):
            raise VideoDecodeError(f"video stream has no usable frame rate ({rate})")
        crop_w, crop_h = _crop_size(container.metadata.get("comment", ""), width, height)
        ctx.options = {"err_detect": "crccheck+bitstream+buffer+explode", "max_pixels": ffmpeg_cap}
        # One allocation of the declared size (checked above), filled in place: no list + stack copy.
        expect = max(info.frames, declared)
        out = np.empty((expect, crop_h, crop_w, 3), np.uint8)
        n = 0
        for frame in container.decode(stream):
            if n >= expect:
                raise VideoDecodeError(f"more frames decoded than the {expect} declared")
            if frame.width != width or frame.height != height:
                raise VideoDecodeError(f"frame {n} is {frame.width}x{frame.height}, stream declares {width}x{height}")
            out[n] = frame.to_ndarray(format="rgb24")[:crop_h, :crop_w]
            n += 1
    if n == 0:
        raise VideoDecodeError("no frames could be decoded")
    if n < expect:
        raise VideoDecodeError(f"truncated: decoded {n} of {expect} declared frames")
    return Clip(frames=out, fps=fps)


def _crop_size(comment: str, width: int, height: int) -> tuple[int, int]:
    """The true size recorded by `encode_mp4`, if present and consistent; else the coded size."""
    match = _CROP_TAG.match(comment or "")
    if match is None:
        return width, height
    cw, ch = int(match.group(1)), int(match.group(2))
    if 1 <= cw <= width and 1 <= ch <= height and width - cw <= 1 and height - ch <= 1:
        return cw, ch
    return width, height
