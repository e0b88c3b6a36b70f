"""Keep freed heap in a process that reads pairs, so each batch does not page-fault its memory in afresh.

A reader allocates a batch of ~100 KB buffers (hiredis's reply `bytes`, the
tensors' copies) and frees them a few milliseconds later. glibc hands the top of
its heap back to the kernel once more than `M_TRIM_THRESHOLD` of it is free
(dynamically ~2 MB after the first large free), so every batch of 16 pairs is
trimmed away and the next one faults ~3 MB of fresh pages in again: measured
with `benchmarks/bench_replay.py`, a read took 190 µs a pair with glibc's
defaults and 120 µs with a higher trim threshold (2-core VM, 100 KB payloads).

The settings are process-wide and glibc-only (a no-op elsewhere). Setting one
turns off glibc's dynamic mmap threshold, so `M_MMAP_THRESHOLD` is set too: a
payload up to `mmap_threshold_bytes` comes from the heap instead of a fresh
`mmap` (which would fault in as well).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_lock = threading.Lock()
_applied: tuple[int, int] | None = None


def keep_freed_heap(*, trim_threshold_bytes: int = 128 << 20, mmap_threshold_bytes: int = 16 << 20) -> bool:
    """Let this process keep up to `trim_threshold_bytes` of freed heap; True when glibc took the settings.

    Idempotent (the first call's values stay). The cost is resident memory: up to
    `trim_threshold_bytes` that a reader would otherwise return to the kernel.
    """
    global _applied
    with _lock:
        if _applied is not None:
            return True
        name = ctypes.util.find_library("c")
        if name is None:
            return False
        try:
            mallopt = ctypes.CDLL(name).mallopt
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        if not (mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes) and mallopt(_M_TRIM_THRESHOLD, trim_threshold_bytes)):
            return False
        _applied = (trim_threshold_bytes, mmap_threshold_bytes)
        return True
