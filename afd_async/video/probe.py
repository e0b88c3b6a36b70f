"""A pure-Python MP4 (ISO-BMFF) header probe: what a file *declares*, before any decoding.

Why our own parser rather than FFmpeg's: opening a file with FFmpeg already
runs `avformat_find_stream_info`, which may decode frames to learn the
stream's parameters, so a decode bomb (a few kB declaring 16k x 16k frames or
a million samples) would allocate before any cap could be checked. This probe
reads only box headers and a few fixed fields, in bounded time and memory:

    info = probe_mp4(data)                   # raises Mp4ProbeError (a VideoDecodeError)
    info.width, info.height                  # the video sample entry's coded size
    info.frames                              # samples declared (stsz, or the fragments' trun)
    info.fps                                 # frames / declared duration (0.0 when unknown)

What it reads (ISO/IEC 14496-12): the top-level boxes must tile the file
exactly (catches truncation anywhere); `moov/trak` with an `hdlr` of type
`vide`; its `tkhd` track id, `mdhd` timescale and duration, the first
`stsd` visual sample entry (codec fourcc, width, height), `stsz` sample count
and `stts` total duration; for fragmented files, `moof/traf/trun` sample
counts of that track. Every failure is an `Mp4ProbeError` with a reason;
nothing else escapes (property-tested and fuzzed, `tests/fuzz/`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, Optional

from afd_async.video.errors import VideoDecodeError

__all__ = ["Mp4Info", "Mp4ProbeError", "check_boxes", "probe_mp4"]

_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"moof", b"traf", b"mvex"})
_MAX_DEPTH = 8
_MAX_BOXES = 100_000  # a real teacher clip has a few dozen; a file of a million tiny boxes is hostile
_U32 = struct.Struct(">I")


class Mp4ProbeError(VideoDecodeError):
    """The bytes are not a well-formed MP4 with a video track; the message says why."""


@dataclass(frozen=True)
class Mp4Info:
    """What the first video track declares.

    Attributes:
        width, height: the visual sample entry's coded size (pixels).
        frames: samples declared (0 if none).
        fps: frames per second from the declared duration; 0.0 when the duration is unknown.
        codec: the sample entry's fourcc, e.g. `"avc1"`.
        track_id: the track's id (`tkhd`).
        fragmented: the samples live in `moof` fragments.
    """

    width: int
    height: int
    frames: int
    fps: float
    codec: str
    track_id: int
    fragmented: bool

    @property
    def pixels(self) -> int:
        """Pixels of one frame."""
        return self.width * self.height


def _boxes(data: bytes, start: int, end: int, counter: list[int]) -> Iterator[tuple[bytes, int, int]]:
    """`(type, payload_start, box_end)` of the boxes tiling `data[start:end]` exactly."""
    pos = start
    while pos < end:
        counter[0] += 1
        if counter[0] > _MAX_BOXES:
            raise Mp4ProbeError(f"more than {_MAX_BOXES} boxes")
        if end - pos < 8:
            raise Mp4ProbeError(f"truncated: {end - pos} stray bytes after the last box at byte {pos}")
        size = _U32.unpack_from(data, pos)[0]
        kind = data[pos + 4 : pos + 8]
        header = 8
        if size == 1:  # 64-bit "largesize" follows the type
            if end - pos < 16:
                raise Mp4ProbeError(f"truncated: incomplete 64-bit box header at byte {pos}")
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:  # the box extends to the end of its parent
            size = end - pos
        if not all(0x20 <= b < 0x7F for b in kind):
            raise Mp4ProbeError(f"not an MP4: bad box type at byte {pos}")
        if size < header:
            raise Mp4ProbeError(f"corrupt MP4: box {kind.decode()!r} at byte {pos} has size {size}")
        if pos + size > end:
            raise Mp4ProbeError(
                f"truncated: box {kind.decode()!r} at byte {pos} needs {size} bytes, {end - pos} remain")
        yield kind, pos + header, pos + size
        pos += size


def check_boxes(data: bytes) -> None:
    """The top-level boxes tile the file exactly and include a `moov` (cheap; no field parsing)."""
    if not any(kind == b"moov" for kind, _, _ in _boxes(data, 0, len(data), [0])):
        raise Mp4ProbeError("not an MP4 (or truncated): no 'moov' box")


def _children(data: bytes, start: int, end: int, counter: list[int], depth: int) -> dict[bytes, list[tuple[int, int]]]:
    if depth > _MAX_DEPTH:
        raise Mp4ProbeError(f"boxes nested deeper than {_MAX_DEPTH}")
    out: dict[bytes, list[tuple[int, int]]] = {}
    for kind, a, b in _boxes(data, start, end, counter):
        out.setdefault(kind, []).append((a, b))
    return out


def _field(data: bytes, start: int, end: int, offset: int, size: int, what: str) -> int:
    if start + offset + size > end:
        raise Mp4ProbeError(f"truncated {what}: needs {offset + size} bytes, box has {end - start}")
    return int.from_bytes(data[start + offset : start + offset + size], "big")


def _one(kids: dict[bytes, list[tuple[int, int]]], kind: bytes, where: str) -> tuple[int, int]:
    spans = kids.get(kind)
    if not spans:
        raise Mp4ProbeError(f"no '{kind.decode()}' box in '{where}'")
    return spans[0]


def _video_track(data: bytes, trak: tuple[int, int], counter: list[int]) -> Optional[dict[str, int | str]]:
    """The fields of one `trak`, or None when it is not a video track."""
    kids = _children(data, *trak, counter, 2)
    mdia = _children(data, *_one(kids, b"mdia", "trak"), counter, 3)
    hs, he = _one(mdia, b"hdlr", "mdia")
    if data[hs + 8 : hs + 12] != b"vide" or he - hs < 12:
        return None
    ts, te = _one(kids, b"tkhd", "trak")
    tk_version = _field(data, ts, te, 0, 1, "tkhd")
    track_id = _field(data, ts, te, 20 if tk_version == 1 else 12, 4, "tkhd")
    ms, me = _one(mdia, b"mdhd", "mdia")
    if _field(data, ms, me, 0, 1, "mdhd") == 1:
        timescale, duration = _field(data, ms, me, 20, 4, "mdhd"), _field(data, ms, me, 24, 8, "mdhd")
    else:
        timescale, duration = _field(data, ms, me, 12, 4, "mdhd"), _field(data, ms, me, 16, 4, "mdhd")
    minf = _children(data, *_one(mdia, b"minf", "mdia"), counter, 4)
    stbl = _children(data, *_one(minf, b"stbl", "minf"), counter, 5)
    ss, se = _one(stbl, b"stsd", "stbl")
    if _field(data, ss, se, 4, 4, "stsd") < 1:
        raise Mp4ProbeError("video track has no sample description")
    entry = ss + 8  # the first sample entry: size, fourcc, 6 reserved, data ref index, then the visual fields
    entry_end = min(se, entry + _field(data, ss, se, 8, 4, "stsd sample entry"))
    codec = data[entry + 4 : entry + 8]
    if not all(0x20 <= b < 0x7F for b in codec) or len(codec) < 4:
        raise Mp4ProbeError("video sample entry has a bad codec fourcc")
    width = _field(data, entry, entry_end, 32, 2, "visual sample entry")
    height = _field(data, entry, entry_end, 34, 2, "visual sample entry")
    frames = 0
    if b"stsz" in stbl:
        frames = _field(data, *stbl[b"stsz"][0], 8, 4, "stsz")
    elif b"stz2" in stbl:
        frames = _field(data, *stbl[b"stz2"][0], 8, 4, "stz2")
    ticks = 0
    if b"stts" in stbl:
        a, b = stbl[b"stts"][0]
        n = _field(data, a, b, 4, 4, "stts")
        if 8 + 8 * n > b - a:
            raise Mp4ProbeError(f"stts declares {n} entries, box has room for {(b - a - 8) // 8}")
        ticks = sum(_U32.unpack_from(data, a + 8 + 8 * i)[0] * _U32.unpack_from(data, a + 12 + 8 * i)[0]
                    for i in range(n))
    return {"track_id": track_id, "timescale": timescale, "duration": duration, "codec": codec.decode(),
            "width": width, "height": height, "frames": frames, "ticks": ticks}


def _fragment_samples(data: bytes, top: dict[bytes, list[tuple[int, int]]], track_id: int,
                      counter: list[int]) -> int:
    """Samples of `track_id` in every `moof/traf/trun`."""
    total = 0
    for moof in top.get(b"moof", []):
        for traf in _children(data, *moof, counter, 1).get(b"traf", []):
            kids = _children(data, *traf, counter, 2)
            if _field(data, *_one(kids, b"tfhd", "traf"), 4, 4, "tfhd") != track_id:
                continue
            total += sum(_field(data, a, b, 4, 4, "trun") for a, b in kids.get(b"trun", []))
    return total


def probe_mp4(data: bytes | bytearray | memoryview) -> Mp4Info:
    """What the first video track of an MP4 declares, without decoding (see the module docstring).

    Raises:
        Mp4ProbeError: not bytes, empty, truncated, malformed boxes, no `moov`, or no video track.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Mp4ProbeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise Mp4ProbeError("empty video data")
    counter = [0]
    top = _children(data, 0, len(data), counter, 0)
    if b"moov" not in top:
        raise Mp4ProbeError("not an MP4 (or truncated): no 'moov' box")
    moov = _children(data, *top[b"moov"][0], counter, 1)
    track = None
    for trak in moov.get(b"trak", []):
        track = _video_track(data, trak, counter)
        if track is not None:
            break
    if track is None:
        raise Mp4ProbeError("no video stream in the container")
    frames, fragmented = int(track["frames"]), b"moof" in top
    if fragmented:
        frames += _fragment_samples(data, top, int(track["track_id"]), counter)
    timescale, ticks = int(track["timescale"]), int(track["ticks"]) or int(track["duration"])
    fps = frames * timescale / ticks if timescale and ticks and frames and not fragmented else 0.0
    return Mp4Info(width=int(track["width"]), height=int(track["height"]), frames=frames, fps=float(fps),
                   codec=str(track["codec"]), track_id=int(track["track_id"]), fragmented=fragmented)
