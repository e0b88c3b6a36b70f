"""Fault injection for the local teacher server: the failures real providers produce.

The gateway must survive throttling, 5xx, hung connections, broken or wrong
videos and expired result URLs. The local server injects each on demand, in
two ways:

- **By probability** (`FaultConfig`), deterministic for a given `seed` and
  order of requests/jobs, for benchmarks and soak runs. At most one fault per
  request and one per job: the probabilities of each group must sum to <= 1.
- **By prompt marker**, for tests: a prompt containing `[fault:NAME]` forces
  fault NAME; the marker is stripped before rendering (the job object still
  shows the prompt as submitted, so clients can match it). Request faults fire
  on the create request; `[fault:NAME:N]` fires only on the first N creates of
  that exact prompt, so a retrying client then succeeds.

Request faults (per HTTP request):
    `rate_limit` (create only: 429, code `rate_limit`, Retry-After),
    `server_error` (500, code `server_error`),
    `hang` (no response for `hang_s`, then 504: longer than any sane client timeout).

Job faults (decided when the job is created):
    `content_policy` (the job fails with code `content_policy`),
    `truncated_mp4` (the stored MP4 is cut short), `corrupt_mp4` (garbled),
    `expired_url` (the job reads `completed` but its content URL answers 410),
    `wrong_size` (half the size), `wrong_fps` (double the declared fps),
    `wrong_length` (half the frames),
    `decode_bomb` (a valid ~5 kB MP4 of one 4096x4096 frame: 16.7 M pixels, over any sane cap),
    `oversized` (the MP4 padded with a `free` box to `OVERSIZED_BYTES`: over a client's download cap).
"""

from __future__ import annotations

import functools
import random
import re
import threading
from dataclasses import dataclass, fields
from typing import Literal, Optional

import numpy as np

from afd_async.video.clip import Clip

__all__ = [
    "JOB_FAULTS",
    "REQUEST_FAULTS",
    "FaultConfig",
    "FaultInjector",
    "FaultMarkerError",
    "corrupt_mp4",
    "decode_bomb",
    "distort_clip",
    "pad_mp4",
    "parse_markers",
    "truncate_mp4",
]

RequestFault = Literal["rate_limit", "server_error", "hang"]
JobFault = Literal[
    "content_policy", "truncated_mp4", "corrupt_mp4", "expired_url", "wrong_size", "wrong_fps", "wrong_length",
    "decode_bomb", "oversized",
]
REQUEST_FAULTS: tuple[str, ...] = ("rate_limit", "server_error", "hang")
JOB_FAULTS: tuple[str, ...] = (
    "content_policy", "truncated_mp4", "corrupt_mp4", "expired_url", "wrong_size", "wrong_fps", "wrong_length",
    "decode_bomb", "oversized",
)
OVERSIZED_BYTES = 32 << 20  # size of an `oversized` result
_MARKER = re.compile(r"\[fault:([a-z_0-9]+)(?::(\d+))?\]")


class FaultMarkerError(ValueError):
    """A `[fault:...]` marker names no known fault (a typo in a test prompt)."""


@dataclass(frozen=True)
class FaultConfig:
    """Fault probabilities (each in [0, 1]) and their parameters.

    Attributes:
        seed: seeds the fault draws, so a run is reproducible.
        rate_limit: P(a create answers 429 `rate_limit`) beyond the real token bucket.
        server_error: P(a job request answers 500).
        hang: P(a job request hangs for `hang_s`, then 504).
        content_policy: P(a job fails with `content_policy`).
        truncated_mp4: P(a job's MP4 is truncated).
        corrupt_mp4: P(a job's MP4 is garbled).
        expired_url: P(a job's content URL is already expired, 410).
        wrong_size: P(a job's video has half the requested size).
        wrong_fps: P(a job's video declares double the fps).
        wrong_length: P(a job's video has half the frames).
        decode_bomb: P(a job's MP4 is a decode bomb: one 4096x4096 frame in ~5 kB).
        oversized: P(a job's MP4 is padded to `OVERSIZED_BYTES`).
        hang_s: how long a hung response stalls.
        retry_after_s: Retry-After sent with injected 429s.
    """

    seed: int = 0
    rate_limit: float = 0.0
    server_error: float = 0.0
    hang: float = 0.0
    content_policy: float = 0.0
    truncated_mp4: float = 0.0
    corrupt_mp4: float = 0.0
    expired_url: float = 0.0
    wrong_size: float = 0.0
    wrong_fps: float = 0.0
    wrong_length: float = 0.0
    decode_bomb: float = 0.0
    oversized: float = 0.0
    hang_s: float = 30.0
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in REQUEST_FAULTS + JOB_FAULTS and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise ValueError(f"FaultConfig.{f.name} is a probability, got {getattr(self, f.name)}")
        for group, names in (("request", REQUEST_FAULTS), ("job", JOB_FAULTS)):
            if sum(getattr(self, n) for n in names) > 1.0 + 1e-9:
                raise ValueError(f"{group} fault probabilities sum above 1 (one fault per {group} at most)")
        if self.hang_s <= 0 or self.retry_after_s <= 0:
            raise ValueError("hang_s and retry_after_s must be > 0")


def parse_markers(prompt: str) -> tuple[str, dict[str, Optional[int]]]:
    """Strip `[fault:NAME]` / `[fault:NAME:N]` markers.

    Returns:
        `(clean_prompt, {name: N or None})`.

    Raises:
        FaultMarkerError: a marker names an unknown fault.
    """
    found: dict[str, Optional[int]] = {}
    for match in _MARKER.finditer(prompt):
        name = match.group(1)
        if name not in REQUEST_FAULTS + JOB_FAULTS:
            raise FaultMarkerError(f"unknown fault marker {name!r}; known: {', '.join(REQUEST_FAULTS + JOB_FAULTS)}")
        found[name] = int(match.group(2)) if match.group(2) else None
    clean = " ".join(_MARKER.sub(" ", prompt).split())
    return clean, found


class FaultInjector:
    """Draws faults deterministically and counts what it injected (thread-safe)."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self._marker_hits: dict[tuple[str, str], int] = {}
        self.injected: dict[str, int] = {name: 0 for name in REQUEST_FAULTS + JOB_FAULTS}

    def request_fault(self, *, create: bool, prompt: str = "", markers: Optional[dict[str, Optional[int]]] = None
                      ) -> Optional[str]:
        """The fault for one job request, if any: a create's marker first, else one seeded draw."""
        with self._lock:
            for name in REQUEST_FAULTS:
                if create and markers and name in markers:
                    limit = markers[name]
                    hits = self._marker_hits.get((prompt, name), 0)
                    if limit is None or hits < limit:
                        self._marker_hits[(prompt, name)] = hits + 1
                        self.injected[name] += 1
                        return name
            u, acc = self._rng.random(), 0.0  # one draw per request keeps the sequence reproducible
            for name in REQUEST_FAULTS:
                acc += getattr(self.config, name)
                if u < acc:
                    if name == "rate_limit" and not create:
                        return None
                    self.injected[name] += 1
                    return name
        return None

    def job_fault(self, job_seq: int, markers: dict[str, Optional[int]]) -> Optional[str]:
        """The fault for job number `job_seq`: a marker first, else a draw seeded by (seed, job_seq)."""
        forced = [name for name in JOB_FAULTS if name in markers]
        name: Optional[str] = forced[0] if forced else None
        if name is None:
            u, acc = random.Random(f"{self.config.seed}:{job_seq}").random(), 0.0
            for candidate in JOB_FAULTS:
                acc += getattr(self.config, candidate)
                if u < acc:
                    name = candidate
                    break
        if name is not None:
            with self._lock:
                self.injected[name] += 1
        return name


def distort_clip(clip: Clip, fault: Optional[str]) -> Clip:
    """Apply a wrong-format job fault to a rendered clip (other faults: unchanged)."""
    if fault == "wrong_size":
        return Clip(frames=clip.frames[:, ::2, ::2].copy(), fps=clip.fps)
    if fault == "wrong_fps":
        return Clip(frames=clip.frames, fps=clip.fps * 2.0)
    if fault == "wrong_length":
        return Clip(frames=clip.frames[: max(1, clip.num_frames // 2)].copy(), fps=clip.fps)
    return clip


def truncate_mp4(data: bytes, seed: int) -> bytes:
    """Keep 30-70% of the file, as a dropped upload or download would."""
    keep = random.Random(seed).uniform(0.3, 0.7)
    return data[: max(1, int(len(data) * keep))]


def corrupt_mp4(data: bytes, seed: int) -> bytes:
    """Garble the `moov` box tag and 256 bytes of payload: unreadable, same length."""
    rng = random.Random(seed)
    out = bytearray(data)
    pos = out.find(b"moov")
    if pos >= 0:
        out[pos : pos + 4] = b"\x00\x01\xfe\xff"
    start = rng.randrange(0, max(1, len(out) - 256))
    out[start : start + 256] = rng.randbytes(min(256, len(out) - start))
    return bytes(out)


@functools.lru_cache(maxsize=1)
def decode_bomb() -> bytes:
    """A valid MP4 of one black 4096x4096 frame (~5 kB on the wire, 50 MB decoded as RGB); built once."""
    # deferred: PyAV loads only where clips are encoded
    from afd_async.video.codec import encode_mp4

    return encode_mp4(Clip(frames=np.zeros((1, 4096, 4096, 3), np.uint8), fps=1.0))


def pad_mp4(data: bytes, size: int = OVERSIZED_BYTES) -> bytes:
    """Append a `free` box so the file is `size` bytes: still a valid MP4, just too big to accept."""
    pad = max(8, size - len(data))
    return data + pad.to_bytes(4, "big") + b"free" + bytes(pad - 8)
