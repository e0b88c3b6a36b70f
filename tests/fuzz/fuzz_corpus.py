"""Seed corpora: valid inputs of each target, built from the encoders (so they track the formats)."""

from __future__ import annotations

import hashlib

import msgpack
import numpy as np
import torch

__all__ = ["seeds"]


def _msg() -> list[bytes]:
    from afd_async.codec.msg import pack
    from afd_async.transport.feed_wire import Batch, control, encode_batch
    from afd_async.transport.weights_layout import wmsg

    head, *bufs = encode_batch(7, Batch(tensors={"x": torch.arange(6, dtype=torch.float16).reshape(2, 3)},
                                        meta={"ids": ["a", "b"]}))
    return [
        pack({"kind": "pair", "schema": 1, "t": torch.ones(2, 2), "a": np.arange(3, dtype=np.int32), "s": "x"}),
        control("hello", rank=0), control("credit", n=4), control("ack", seqs=[1, 2]), control("ping"),
        head, wmsg("announce", version=3, sha256="ab" * 32, total=128, scope="full"),
        wmsg("chunk", rid=1, version=3, index=0, sizes=[64]), wmsg("latest", rid=2),
    ]


def _mp4() -> list[bytes]:
    from afd_async.video.clip import Clip
    from afd_async.video.codec import encode_mp4

    yy, xx = np.mgrid[:16, :24]
    frames = np.stack([np.stack([(xx * 10 + i) % 256, yy * 12, (xx + yy) * 5], -1) for i in range(4)]).astype(np.uint8)
    files = [encode_mp4(Clip(frames=frames, fps=8.0)), encode_mp4(Clip(frames=frames[:1, :9, :13], fps=24.0))]
    # Patch-mode seeds (see `fuzz_targets._patched_mp4`): a no-op patch, and one inside each file's mdat.
    return files + [b"P\x00\x00\x00", b"P\x00" + (files[0].find(b"mdat") + 64).to_bytes(2, "big") + b"\xff" * 8,
                    b"P\x01" + (files[1].find(b"mdat") + 40).to_bytes(2, "big") + b"\x00\x00\x01"]


def _manifest() -> list[bytes]:
    from afd_async.transport.weights_layout import Manifest, plan_layout

    ts = {"a": torch.ones(3, dtype=torch.float32), "b": torch.zeros(2, 2, dtype=torch.bfloat16)}
    entries, total = plan_layout(ts)
    digests = [hashlib.sha256(bytes(min(64, total - i))).digest() for i in range(0, total, 64)]
    top = Manifest.top_digest(1, "full", total, 64, entries, digests)
    m = Manifest(1, "full", total, 64, tuple(entries), tuple(digests), top)
    return [msgpack.packb(m.to_wire())]


def _records() -> list[bytes]:
    from afd_async.teacher.actor import encode_record
    from afd_async.teacher.cache import CacheEntry, TeacherMeta, encode_entry
    from afd_async.video.clip import Clip

    meta = TeacherMeta(provider="openai", model="m", job_id="j", latency_s=1.0, video_seconds=0.5)
    entry = CacheEntry(key="k", prompt="a ball falls", seed=1, params={}, clip=Clip(np.zeros((2, 3, 4, 3), np.uint8), 4.0),
                       meta=meta, created_at=1.0)
    return [encode_record("a red ball falls", 3), encode_entry(entry)]


def seeds(target: str) -> list[bytes]:
    """The seed inputs of `target` (see `fuzz_targets.TARGETS`)."""
    return {"msg": _msg, "mp4": _mp4, "manifest": _manifest, "records": _records}[target]()
