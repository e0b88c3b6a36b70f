"""Replay throughput: PairWriter/PairReader vs a raw redis-py XADD/XREADGROUP/XACK loop.

Both loops move the same payload size through one private redis-server on
loopback, in rounds of `--chunk` pairs (insert the chunk, read + ack it, trim),
so Redis memory stays bounded. The raw loop sends pre-built bytes with no codec,
no dedupe and no blobs: it is the ceiling. Ours includes msgpack encode/decode of
the tensors, the dedupe Lua script at read and the owner-checked ack.

    python benchmarks/bench_replay.py            # ~100 KB and ~2 MB pairs
    python benchmarks/bench_replay.py --quick    # fewer pairs
"""

from __future__ import annotations

import argparse
import statistics
import time
import redis

from afd_async.replay import PairReader, PairWriter, trim_acked
from afd_async.replay.examples import make_pair
from afd_async.store.redis_server import RedisServer


def bench_ours(r: redis.Redis, size: int, n: int, chunk: int, inline_max_bytes: int) -> float:
    pairs = [make_pair(i, payload_bytes=size) for i in range(chunk)]
    stream = f"bench:ours:{size}:{inline_max_bytes}:{time.monotonic_ns()}"
    w = PairWriter(r, stream=stream, inline_max_bytes=inline_max_bytes, blob_ttl_s=60)
    rd = PairReader(r, stream=stream, group="g", consumer="c")
    done, k = 0, 0
    t0 = time.perf_counter()
    while done < n:
        for p in pairs:
            w.write(make_pair_id(p, k))
            k += 1
        got = []
        while len(got) < chunk:
            got += rd.read(count=chunk - len(got), block_ms=1000)
        rd.ack([sid for sid, _ in got])
        trim_acked(r, stream)
        done += chunk
    dt = time.perf_counter() - t0
    r.delete(stream)
    return done / dt


def make_pair_id(p, k: int):  # type: ignore[no-untyped-def]
    """The same tensors under a fresh pair id (dedupe would drop repeats)."""
    from dataclasses import replace

    return replace(p, pair_id=f"p{k}")


def bench_raw(r: redis.Redis, size: int, n: int, chunk: int) -> float:
    payload = bytes(bytearray(range(256)) * (size // 256 + 1))[:size]
    stream = f"bench:raw:{size}:{time.monotonic_ns()}"
    r.xgroup_create(stream, "g", id="0", mkstream=True)
    done = 0
    t0 = time.perf_counter()
    while done < n:
        for _ in range(chunk):
            r.xadd(stream, {b"p": payload})
        got = []
        while len(got) < chunk:
            resp = r.xreadgroup("g", "c", {stream: ">"}, count=chunk - len(got), block=1000)
            got += resp[0][1] if resp else []
        r.xack(stream, "g", *[sid for sid, _ in got])
        r.xtrim(stream, minid=got[-1][0])
        done += chunk
    dt = time.perf_counter() - t0
    r.delete(stream)
    return done / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer pairs per measurement")
    ap.add_argument("--repeats", type=int, default=5, help="measurements per cell (median reported)")
    ap.add_argument("--chunk", type=int, default=16, help="pairs per insert/consume round")
    args = ap.parse_args()
    sizes = [(100 << 10, 160 if args.quick else 480), (2 << 20, 32 if args.quick else 64)]
    modes = {"raw": None, "inline": 1 << 30, "blob": 0}
    results: dict[tuple[int, str], list[float]] = {}
    with RedisServer() as server:
        r = redis.Redis(**server.client_kwargs(), socket_timeout=30)
        for size, n in sizes:
            bench_ours(r, size, args.chunk, args.chunk, 1 << 30)  # warm-up
            for _ in range(args.repeats):  # rotate the loops so machine load hits all alike
                for mode, limit in modes.items():
                    rate = bench_raw(r, size, n, args.chunk) if limit is None else bench_ours(r, size, n, args.chunk, limit)
                    results.setdefault((size, mode), []).append(rate)
        r.close()
    print(f"{'payload':>9} {'mode':>7} {'pairs':>6} {'ours pairs/s':>13} {'raw pairs/s':>12} {'ratio':>6}")
    for size, n in sizes:
        raw = statistics.median(results[(size, "raw")])
        for mode in ("inline", "blob"):
            ours = statistics.median(results[(size, mode)])
            print(f"{size / 1024:>7.0f}KB {mode:>7} {n:>6} {ours:>13.1f} {raw:>12.1f} {ours / raw:>6.2f}")


if __name__ == "__main__":
    main()
