"""Weight sync on one host against the memcpy bound of the same bytes, measured in the same run.

Run: `python benchmarks/bench_weights.py [--gb 1 2.6] [--actors 1 8] [--rounds 3]`, or
`measure(gb, actors)` from `benchmarks/plumbing.py`.

For each actor count, actors are threads with their own `WeightSubscriber` (own sockets,
own buffers), waiting as a real actor does, before the learner calls `publish()`. One
round's `sync` is from the `publish()` call until every actor holds the verified version
(copied, every chunk digest and NaN/Inf checked); `load` is the actor's own copy into its
model afterwards, reported apart (any transport needs it). Rounds 1 and 2 fill fresh
buffers (first-touch page faults: publisher arenas, the subscribers' double buffers);
round 3 on is steady state. The bound is memcpy of the same bytes, `actors × size`, warm,
with as many copying threads as there are actors or cores (whichever is fewer):
`weights_ratio = steady sync ÷ bound`, goal ≤ 2. Where steady state would not fit in
memory (MemAvailable less a margin for the other users of the machine), the actors' model copies
are left out (no load column), and failing that one cold round is measured; the row says so. `zmq_ratio` is the same with shared memory off (what actors
on other hosts get, here over loopback).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any, Optional

import torch

from afd_async.transport import WeightPublisher, WeightSubscriber

MARGIN = 4 << 30  # memory left to the machine's other users


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def make_model(nbytes: int) -> dict[str, torch.Tensor]:
    """bf16 tensors of ~64 MiB (like DiT blocks) plus a small one."""
    model, i, left = {}, 0, nbytes
    while left > 0:
        n = min(left, 64 << 20) // 2
        model[f"blocks.{i:03d}.weight"] = torch.empty(n, dtype=torch.bfloat16).normal_()
        left -= 2 * n
        i += 1
    model["head.bias"] = torch.zeros(3072)
    return model


def memcpy_seconds(nbytes: int, copies: int) -> float:
    """Seconds for `copies` warm copies of `nbytes` on min(copies, cores) threads (torch copy releases the GIL)."""
    threads = max(1, min(copies, os.cpu_count() or 1))
    src = torch.empty(nbytes, dtype=torch.uint8).fill_(1)
    dsts = [torch.empty(nbytes, dtype=torch.uint8).fill_(0) for _ in range(threads)]
    share = [copies // threads + (i < copies % threads) for i in range(threads)]

    def work(dst: torch.Tensor, n: int) -> None:
        for _ in range(n):
            dst.copy_(src)

    best = float("inf")
    for _ in range(3):  # the best of three: the bound is what the memory system can do
        ts = [threading.Thread(target=work, args=(d, n)) for d, n in zip(dsts, share)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return best


def sync_rounds(model: dict[str, torch.Tensor], actors: int, rounds: int, *, shm: bool, load: bool,
                max_followers: Optional[int] = None) -> list[dict[str, float]]:
    """Per round: publish seconds, sync seconds (publish call → every actor verified), slowest load seconds
    (0 without `load`: no model copy per actor, where memory is short)."""
    out: list[dict[str, float]] = []
    with WeightPublisher("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", chunk_size=16 << 20, keep_versions=1,
                         shm=shm) as pub:
        subs = [WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, shm=shm, max_followers=max_followers)
                for _ in range(actors)]
        targets = [{k: torch.empty_like(v).zero_() for k, v in model.items()} for _ in range(actors)] if load else []
        try:
            for version in range(1, rounds + 1):
                done = [0.0] * actors
                loads = [0.0] * actors
                errors: list[BaseException] = []

                def actor(i: int) -> None:
                    try:
                        update = subs[i].wait_for_version(version, timeout_s=600)
                        done[i] = time.perf_counter()
                        if targets:
                            for k, v in update.state_dict.items():
                                targets[i][k].copy_(v)
                            loads[i] = time.perf_counter() - done[i]
                    except BaseException as e:  # noqa: BLE001 - re-raised below
                        errors.append(e)

                threads = [threading.Thread(target=actor, args=(i,)) for i in range(actors)]
                for t in threads:
                    t.start()
                t0 = time.perf_counter()
                pub.publish(version, model)
                t_pub = time.perf_counter() - t0
                for t in threads:
                    t.join()
                if errors:
                    raise errors[0]
                out.append({"publish_s": t_pub, "sync_s": max(done) - t0, "load_s": max(loads)})
            shm_reads = sum(s.stats.shm_reads for s in subs)
            if shm and shm_reads != actors * rounds:
                raise RuntimeError(f"{shm_reads} of {actors * rounds} reads came from shared memory")
        finally:
            for s in subs:
                s.close()
    return out


def fits(nbytes: int, actors: int, rounds: int, load: bool) -> bool:
    """Publisher arenas (≤ 3 with keep_versions=1) + per actor: buffers (2 from round 2), a model to load
    (the learner's model is allocated already: MemAvailable does not count it)."""
    arenas, per_actor = (1, 1) if rounds == 1 else (3, 2)
    return nbytes * (arenas + (per_actor + load) * actors) * 1.05 + MARGIN < mem_available()


def measure(gb: float, actors: list[int], rounds: int = 3, zmq: bool = True,
            max_followers: Optional[int] = None) -> dict[str, Any]:
    """Weight sync of `gb` GB to each actor count; ratios to the memcpy bound measured here.

    Returns `{"weights_ratio": {"1": …, "8": …}, "memcpy_gb_per_s": …, "zmq_ratio": {…}, "rows": [...]}`
    (`rows`: per actor count, the rounds' seconds and whether the figure is steady state or one cold round).
    """
    nbytes = int(gb * (1 << 30)) // 64 * 64
    model = make_model(nbytes)
    one = memcpy_seconds(nbytes, 1)
    result: dict[str, Any] = {"gb": gb, "memcpy_gb_per_s": nbytes / one / 1e9, "weights_ratio": {}, "zmq_ratio": {},
                              "rows": []}
    for n in actors:
        for shm in (True, False) if zmq else (True,):
            plan = next(((r, load) for r, load in ((rounds, True), (rounds, False), (1, False))
                         if fits(nbytes, n, r, load)), None)
            if plan is None:
                result["rows"].append({"actors": n, "shm": shm, "skipped": f"needs more than "
                                                                           f"{mem_available() / 2**30:.1f} GiB"})
                continue
            r, load = plan
            rs = sync_rounds(model, n, r, shm=shm, load=load, max_followers=max_followers)
            bound = memcpy_seconds(nbytes, n)
            ratio = rs[-1]["sync_s"] / bound
            (result["weights_ratio"] if shm else result["zmq_ratio"])[str(n)] = ratio
            result["rows"].append({"actors": n, "shm": shm, "steady": r >= 3, "load": load, "bound_s": bound, "ratio": ratio,
                                   "load_ratio": (rs[-1]["sync_s"] + rs[-1]["load_s"]) / bound, "rounds": rs})
            if n > 1:
                break  # ZeroMQ to many same-host actors is not the path they take; one row shows the remote path
    return result


def table(res: dict[str, Any]) -> str:
    lines = [f"{res['gb']:g} GB, memcpy {res['memcpy_gb_per_s']:.1f} GB/s (one thread, warm)",
             f"{'actors':>6} {'path':>4} {'state':>6} {'publish s':>9} {'sync s':>7} {'load s':>7} {'bound s':>8} "
             f"{'sync/bound':>10} {'+load/bound':>11}"]
    for row in res["rows"]:
        path = "shm" if row["shm"] else "zmq"
        if "skipped" in row:
            lines.append(f"{row['actors']:>6} {path:>4} skipped: {row['skipped']}")
            continue
        last = row["rounds"][-1]
        lines.append(f"{row['actors']:>6} {path:>4} {'steady' if row['steady'] else 'cold':>6} {last['publish_s']:>9.3f} "
                     f"{last['sync_s']:>7.3f} {last['load_s']:>7.3f} {row['bound_s']:>8.3f} {row['ratio']:>10.2f} "
                     f"{row['load_ratio'] if row['load'] else float('nan'):>11.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, nargs="+", default=[1.0])
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-followers", type=int, default=None,
                    help="subscribers of this host that follow a write at once (default: half the cores)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    results = []
    for gb in args.gb:
        res = measure(gb, args.actors, rounds=args.rounds, max_followers=args.max_followers)
        results.append(res)
        print(table(res), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
