"""Redis AOF fsync policies (`always`, `everysec`, `no`): write throughput of the run's two kinds of writes.

What docs/DURABILITY.md's choice rests on: the teacher journal writes a few small
records per paid job; student actors write pairs of tens to hundreds of KB. Each
policy gets its own private redis-server (AOF on, data dir on the same disk),
one client, sequential round trips (as the roles do: each write waits for its
reply). Ratios are against `everysec` (the default) measured in the same run.

    python benchmarks/bench_redis_fsync.py                 # quick
    python benchmarks/bench_redis_fsync.py --journal 5000 --pairs 500 --pair-kb 512
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import redis

from afd_async.store.redis_server import RedisServer

POLICIES = ("everysec", "always", "no")


def journal_ops(r: redis.Redis, n: int) -> float:
    """Journal-like writes: one small HSET + HINCRBY in a MULTI per op; returns ops/s."""
    t0 = time.perf_counter()
    for i in range(n):
        pipe = r.pipeline(transaction=True)
        pipe.hset(f"afd:teacher:job:{i}", mapping={"state": "submitting", "token": "t" * 16, "updated_at": i})
        pipe.hincrby("afd:teacher:journal:stats", "begin", 1)
        pipe.execute()
    return n / (time.perf_counter() - t0)


def pair_ops(r: redis.Redis, n: int, kb: int) -> float:
    """Pair-like writes: a payload blob SET (PX) + an XADD of the pair's metadata; returns pairs/s."""
    blob = os.urandom(kb * 1024)
    t0 = time.perf_counter()
    for i in range(n):
        pipe = r.pipeline(transaction=True)
        pipe.set(f"afd:default:pairs:blob:{i}", blob, px=600_000)
        pipe.xadd("afd:default:pairs", {"m": b"x" * 200, "b": f"afd:default:pairs:blob:{i}"})
        pipe.execute()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--journal", type=int, default=2000, help="journal writes per policy")
    ap.add_argument("--pairs", type=int, default=200, help="pair writes per policy")
    ap.add_argument("--pair-kb", type=int, default=256, help="payload of one pair, KiB")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many rounds per cell")
    ap.add_argument("--dir", default=None, help="where the AOFs go (default: a temp dir on the system disk)")
    args = ap.parse_args()

    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="afd-fsync-") as root:
        for policy in POLICIES:
            with RedisServer(data_dir=os.path.join(root, policy), appendonly=True, appendfsync=policy) as srv:
                r = redis.Redis(**srv.client_kwargs())
                j = max(journal_ops(r, args.journal) for _ in range(args.repeats))
                p = max(pair_ops(r, args.pairs, args.pair_kb) for _ in range(args.repeats))
                results[policy] = (j, p)
                r.close()
    base_j, base_p = results["everysec"]
    print(f"Redis AOF fsync policies: {args.journal} journal writes, {args.pairs} pair writes of {args.pair_kb} KiB "
          f"(best of {args.repeats})")
    print(f"| appendfsync | journal writes/s | vs everysec | pairs/s | vs everysec | MB/s of pairs |")
    print("| --- | --- | --- | --- | --- | --- |")
    for policy, (j, p) in results.items():
        print(f"| {policy} | {j:,.0f} | {j / base_j:.2f}x | {p:,.0f} | {p / base_p:.2f}x | "
              f"{p * args.pair_kb / 1024:,.1f} |")


if __name__ == "__main__":
    main()
