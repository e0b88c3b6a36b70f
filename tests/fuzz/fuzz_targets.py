"""Fuzz targets: one entry function per decoder, each `fn(data: bytes) -> None`.

A target returns normally when the decoder accepted the bytes or refused them
with its documented error type; anything else escaping is a bug (atheris then
saves the input as a crash). Shared by the atheris runner (`run.py`, not run by
pytest: CI time) and by `test_harnesses.py`, which runs every target over its
seed corpus so the harnesses cannot rot.

Targets:
    msg       `codec.msg.unpack`, then the feed and weights decoders on the same bytes
    mp4       `video.probe.probe_mp4` and `video.codec.decode_mp4` (small caps)
    manifest  `weights_layout.Manifest.from_wire` on any msgpack value
    records   the teacher's queue record and cache record decoders
"""

from __future__ import annotations

from typing import Callable

import msgpack

from afd_async.codec.msg import MessageError, unpack
from afd_async.teacher.actor import decode_record
from afd_async.teacher.cache import CacheRecordError, decode_entry
from afd_async.transport.errors import WeightsRejected
from afd_async.transport.feed_wire import decode_batch, decode_control
from afd_async.transport.weights_layout import Manifest, decode_wmsg
from afd_async.video.codec import VideoDecodeError, decode_mp4
from afd_async.video.probe import probe_mp4

__all__ = ["TARGETS"]

MP4_CAPS = dict(max_frames=32, max_pixels=128 * 128, max_bytes=1 << 20)


def fuzz_msg(data: bytes) -> None:
    """Any bytes: a message of the expected kind or `MessageError`, for every reader."""
    for reader in (lambda d: unpack(d, expect_kind="pair"), lambda d: decode_control(d, inbound=True),
                   lambda d: decode_control(d, inbound=False), decode_wmsg):
        try:
            msg = reader(data)
        except MessageError:
            continue
        if msg.get("op") == "batch":  # a batch header: its tensor specs against no/some frames
            for frames in ([], [b"\x00" * 8]):
                try:
                    decode_batch(msg, frames)
                except MessageError:
                    pass


_BASE_MP4: list[bytes] = []


def _patched_mp4(data: bytes) -> bytes:
    """Structure-aware mode: overwrite bytes of a valid MP4 at a fuzzed offset, so inputs keep
    their box structure and reach FFmpeg's demuxer and H.264 decoder, not only the probe."""
    if not _BASE_MP4:
        from fuzz_corpus import seeds

        _BASE_MP4.extend(seeds("mp4"))
    base = bytearray(_BASE_MP4[data[1] % len(_BASE_MP4)])
    at = int.from_bytes(data[2:4], "big") % len(base)
    patch = data[4:]
    base[at : at + len(patch)] = patch
    return bytes(base)


def fuzz_mp4(data: bytes) -> None:
    """Any bytes: a clip within the caps, or `VideoDecodeError` (the probe's `Mp4ProbeError` is one).

    Inputs starting with `b"P"` patch a valid seed file instead (`_patched_mp4`).
    """
    if data[:1] == b"P" and len(data) >= 4:
        data = _patched_mp4(data)
    try:
        probe_mp4(data)
    except VideoDecodeError:
        pass
    try:
        clip = decode_mp4(data, **MP4_CAPS)
    except VideoDecodeError:
        return
    assert clip.num_frames <= MP4_CAPS["max_frames"] and clip.height * clip.width <= MP4_CAPS["max_pixels"]


def fuzz_manifest(data: bytes) -> None:
    """Any msgpack value as a manifest: a `Manifest` or `WeightsRejected`."""
    try:
        value = msgpack.unpackb(data, strict_map_key=False)
    except Exception:  # noqa: BLE001 - not msgpack: nothing to test
        return
    try:
        Manifest.from_wire(value, max_bytes=1 << 20)
    except WeightsRejected:
        pass


def fuzz_records(data: bytes) -> None:
    """Any bytes as a queue record (`ValueError`) and as a cache record (`CacheRecordError`)."""
    try:
        decode_record(data)
    except ValueError:
        pass
    try:
        decode_entry(data)
    except CacheRecordError:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "msg": fuzz_msg, "mp4": fuzz_mp4, "manifest": fuzz_manifest, "records": fuzz_records,
}
