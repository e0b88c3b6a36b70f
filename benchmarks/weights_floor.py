"""The floor of a same-host weight sync on this machine: what each piece costs per GB, alone, warm, and what
the sum of the work allows against `bench_weights`' memcpy bound (issue 19.3).

    python benchmarks/weights_floor.py [--gb 1]

A 1-actor shared-memory sync (`transport/weights_publisher.py`, `weights_follow.py`) is, per GB:
the learner's copy into the segment fused with xxh3-128 and the NaN/Inf check (in 2 MiB blocks, while each is
in cache; `hash_threads` threads), and the actor's copy out fused with xxh3-128 (one thread), overlapped chunk by
chunk. Each piece is timed here on one thread and on two, and the CPU-seconds of the two sides are added: on a
machine whose cores are all busy with them, sync ≥ (learner's + actor's CPU-seconds) ÷ cores, whatever the
overlap. The bound `bench_weights` divides by is `memcpy_seconds`: torch's copy, which uses torch's intra-op
threads (every core here), so it is the whole machine copying once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_weights  # noqa: E402  (the bound and the model of the weight-sync benchmark)

from afd_async.transport.weights_layout import chunk_nonfinite, plan_layout  # noqa: E402

BLOCK = 2 << 20  # the publisher's and the follower's block (`_FILL_BLOCK`, `_COPY_BLOCK`)


def _best(fn: Callable[[], None], n: int = 3) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(gb: float = 1.0) -> dict[str, object]:
    """Seconds per piece (1 and 2 threads), the sides' CPU-seconds, and the floor they give against the bound."""
    model = bench_weights.make_model(int(gb * (1 << 30)) // 64 * 64)
    entries, total = plan_layout(model)
    starts = [e.offset for e in entries]
    src = torch.empty(total, dtype=torch.uint8).fill_(1)  # finite in every float format (0x0101…)
    dst = torch.empty(total, dtype=torch.uint8).zero_()
    s, d, view = src.numpy(), dst.numpy(), memoryview(dst.numpy())

    def copy(lo: int, hi: int) -> None:
        for i in range(lo, hi, BLOCK):
            np.copyto(d[i:min(i + BLOCK, hi)], s[i:min(i + BLOCK, hi)])

    def xxh3(lo: int, hi: int) -> None:
        h = xxhash.xxh3_128()
        for i in range(lo, hi, BLOCK):
            h.update(view[i:min(i + BLOCK, hi)])

    def nonfinite(lo: int, hi: int) -> None:
        for i in range(lo, hi, BLOCK):
            chunk_nonfinite(dst, entries, starts, i, min(i + BLOCK, hi))

    def learner(lo: int, hi: int) -> None:  # the publisher's fill: copy, hash, check, block by block
        h = xxhash.xxh3_128()
        for i in range(lo, hi, BLOCK):
            j = min(i + BLOCK, hi)
            np.copyto(d[i:j], s[i:j])
            h.update(view[i:j])
            chunk_nonfinite(dst, entries, starts, i, j)

    def actor(lo: int, hi: int) -> None:  # the follower's copy out: copy, hash, block by block
        h = xxhash.xxh3_128()
        for i in range(lo, hi, BLOCK):
            j = min(i + BLOCK, hi)
            np.copyto(d[i:j], s[i:j])
            h.update(view[i:j])

    def threads(fn: Callable[[int, int], None], n: int) -> Callable[[], None]:
        def run() -> None:
            ts = [threading.Thread(target=fn, args=(k * total // n, (k + 1) * total // n)) for k in range(n)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        return run

    pieces = {name: {"1": _best(threads(fn, 1)), "2": _best(threads(fn, 2))}
              for name, fn in (("copy", copy), ("xxh3", xxh3), ("nonfinite", nonfinite), ("learner", learner),
                               ("actor", actor))}
    bound = bench_weights.memcpy_seconds(total, 1)
    cpu_s = pieces["learner"]["1"] + pieces["actor"]["1"]
    cores = os.cpu_count() or 1
    return {"gb": total / (1 << 30), "load": os.getloadavg()[0], "torch_threads": torch.get_num_threads(),
            "bound_s": bound, "pieces_s": pieces, "sync_cpu_s": cpu_s, "cores": cores,
            "floor_s": cpu_s / cores, "floor_ratio": cpu_s / cores / bound,
            "two_copies_ratio": 2 * pieces["copy"]["1"] / cores / bound}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gb", type=float, default=1.0)
    r = measure(ap.parse_args().gb)
    print(json.dumps(r, indent=1))
    print(f"bound (memcpy, {r['torch_threads']} torch threads) {r['bound_s']:.3f} s; one sync's work "
          f"{r['sync_cpu_s']:.3f} CPU-s (learner {r['pieces_s']['learner']['1']:.3f} + actor "
          f"{r['pieces_s']['actor']['1']:.3f}) on {r['cores']} cores ≥ {r['floor_s']:.3f} s = "
          f"{r['floor_ratio']:.2f}× the bound; the two copies alone {r['two_copies_ratio']:.2f}×")


if __name__ == "__main__":
    main()
