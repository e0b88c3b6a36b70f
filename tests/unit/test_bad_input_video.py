"""Decode bombs and odd containers: refused from what the container declares, before decoding."""

from __future__ import annotations

import io
import subprocess
import sys

import av
import numpy as np
import pytest

from afd_async.video.clip import Clip
from afd_async.video.codec import VideoDecodeError, decode_mp4, encode_mp4
from afd_async.video.probe import probe_mp4

CAPS = dict(max_frames=64, max_pixels=256 * 256, max_bytes=1 << 20)


def _lying_bomb(side: int) -> bytes:
    """One frame of side x side whose sample entry claims 16x16 (the SPS still says side x side)."""
    data = bytearray(encode_mp4(Clip(frames=np.zeros((1, side, side, 3), np.uint8), fps=1.0)))
    entry = data.find(b"stsd") + 12  # stsd payload: version/flags, count; then the first sample entry
    assert data[entry + 4 : entry + 8] == b"avc1"
    data[entry + 32 : entry + 36] = (16).to_bytes(2, "big") + (16).to_bytes(2, "big")
    return bytes(data)


def test_sample_entry_that_lies_about_the_size_is_refused_without_a_big_allocation(tmp_path) -> None:
    """FFmpeg decodes a frame while *opening* a file; without its max_pixels cap this 8192x8192
    bomb (~14 kB) cost ~150 MB of RSS on open. Measured in a fresh process (RSS is a high-water mark)."""
    bomb = _lying_bomb(8192)
    assert len(bomb) < 20_000 and probe_mp4(bomb).pixels == 256
    path = tmp_path / "bomb.mp4"
    path.write_bytes(bomb)
    code = f"""
import resource, sys
from afd_async.video.codec import VideoDecodeError, decode_mp4
data = open({str(path)!r}, "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_mp4(data, max_frames=64, max_pixels=256 * 256, max_bytes=1 << 20)
    sys.exit("decoded a bomb")
except VideoDecodeError as e:
    print("refused:", e)
print("grew_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "8192x8192" in out.stdout and "cap of 65536 pixels" in out.stdout
    grew_mb = int(out.stdout.split("grew_kb")[1]) / 1024
    assert grew_mb < 80, f"refusing the bomb grew RSS by {grew_mb:.0f} MB (a decoded 8192x8192 frame is ~100 MB)"


def test_frames_times_pixels_budget_is_checked_from_the_declaration() -> None:
    clip = encode_mp4(Clip(frames=np.zeros((20, 64, 64, 3), np.uint8), fps=10.0))
    assert decode_mp4(clip, **CAPS).num_frames == 20  # each cap alone admits it
    with pytest.raises(VideoDecodeError, match="20 frames of 64x64 = 81920 pixels"):
        decode_mp4(clip, **CAPS, max_total_pixels=20 * 64 * 64 - 1)


def _fragmented(frames: int, side: int = 16) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov"}) as c:
        s = c.add_stream("libx264", rate=24)
        s.width = s.height = side
        s.pix_fmt, s.options = "yuv420p", {"g": "4"}
        for i in range(frames):
            img = np.full((side, side, 3), (i * 9) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def test_fragmented_mp4_frames_are_counted_from_the_fragments() -> None:
    data = _fragmented(12)
    info = probe_mp4(data)
    assert info.fragmented and info.frames == 12
    assert decode_mp4(data, **CAPS).num_frames == 12
    with pytest.raises(VideoDecodeError, match="declares 12 frames, more than the cap of 8"):
        decode_mp4(data, max_frames=8, max_pixels=CAPS["max_pixels"], max_bytes=CAPS["max_bytes"])


def test_a_video_track_without_samples_is_refused() -> None:
    data = _fragmented(4)
    moof = data.find(b"moof") - 4
    with pytest.raises(VideoDecodeError, match="declares no samples"):
        decode_mp4(data[:moof], **CAPS)  # the empty moov alone: a video track, no samples
