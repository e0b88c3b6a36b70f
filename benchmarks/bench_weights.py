"""Weight sync cost on loopback: publish + fetch + verify + load, against a raw bound, in one run.

Run: `python benchmarks/bench_weights.py [--sizes-mb 10 1024 2662] [--subs 1 4]`.
For each size and subscriber count (subscribers are threads with their own
sockets, like actors on one host) it times `rounds` versions: `publish()` on the
learner, then every subscriber's `wait_for_version` (fetch, per-chunk sha256,
manifest sha256, NaN check) and `load` (copy into that subscriber's model).
The bound moves the same bytes to the same number of receivers through bare
pyzmq PUSH/PULL pairs (16 MiB frames, `recv_into` a warm buffer); `memcpy` is
one warm copy of the bytes. Round 1 is cold (first-touch page faults), the last
is steady state (all buffers reused). Configurations that would not fit in
MemAvailable are skipped. Goal: steady state ≤ 2× the loopback bound.
"""

from __future__ import annotations

import argparse
import threading
import time

import torch
import zmq

from afd_async.transport import WeightPublisher, WeightSubscriber

FRAME = 16 << 20


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def make_model(nbytes: int) -> dict[str, torch.Tensor]:
    """bf16 tensors of ~64 MiB (like DiT blocks) plus a few small ones."""
    model, i, left = {}, 0, nbytes
    while left > 0:
        n = min(left, 64 << 20) // 2
        model[f"blocks.{i}.weight"] = torch.empty(n, dtype=torch.bfloat16).normal_()
        left -= 2 * n
        i += 1
    model["head.bias"] = torch.zeros(3072)
    return model


def raw_bound(nbytes: int, subs: int) -> float:
    """Seconds to push `nbytes` to each of `subs` receivers through bare PUSH/PULL (warm)."""
    src = torch.empty(min(nbytes, FRAME), dtype=torch.uint8).fill_(1)
    dsts = [torch.empty(nbytes, dtype=torch.uint8).fill_(0) for _ in range(subs)]
    ctx = zmq.Context()
    pairs = []
    for _ in range(subs):
        push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        port = push.bind_to_random_port("tcp://127.0.0.1")
        pull.connect(f"tcp://127.0.0.1:{port}")
        pairs.append((push, pull))
    frames = [(o, min(FRAME, nbytes - o)) for o in range(0, nbytes, FRAME)]

    def send(push: zmq.Socket) -> None:
        for _, n in frames:
            push.send(memoryview(src.numpy())[:n], copy=False)

    def recv(pull: zmq.Socket, dst: torch.Tensor) -> None:
        mv = memoryview(dst.numpy())
        for o, n in frames:
            pull.recv_into(mv[o : o + n])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=f, args=a) for p, d in zip(pairs, dsts) for f, a in ((send, (p[0],)), (recv, (p[1], d)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    for push, pull in pairs:
        push.close(0)
        pull.close(0)
    ctx.term()
    return dt


def memcpy_bound(model: dict[str, torch.Tensor]) -> float:
    dst = {k: torch.empty_like(v).zero_() for k, v in model.items()}
    t0 = time.perf_counter()
    for k, v in model.items():
        dst[k].copy_(v)
    return time.perf_counter() - t0


def bench(nbytes: int, subs: int, rounds: int) -> list[tuple[float, float]]:
    """Per round: (publish seconds, publish + slowest fetch/verify/load seconds)."""
    model = make_model(nbytes)
    targets = [{k: torch.empty_like(v).zero_() for k, v in model.items()} for _ in range(subs)]
    out = []
    with WeightPublisher("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", chunk_size=16 << 20, keep_versions=1) as pub:
        subscribers = [WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, window=4) for _ in range(subs)]
        try:
            for version in range(1, rounds + 1):
                t0 = time.perf_counter()
                pub.publish(version, model)
                t_pub = time.perf_counter() - t0

                def actor(sub: WeightSubscriber, target: dict[str, torch.Tensor]) -> None:
                    update = sub.wait_for_version(version, timeout_s=600)
                    for k, v in update.state_dict.items():
                        target[k].copy_(v)

                threads = [threading.Thread(target=actor, args=(s, t)) for s, t in zip(subscribers, targets)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                out.append((t_pub, time.perf_counter() - t0))
                assert all(s.version == version for s in subscribers)
        finally:
            for s in subscribers:
                s.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[10, 1024, 2662])
    parser.add_argument("--subs", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'size':>8} {'subs':>4} {'publish s':>9} {'cold s':>8} {'steady s':>8} {'bound s':>8} "
          f"{'memcpy s':>8} {'steady/bound':>12} {'steady/memcpy':>13}")
    for mb in args.sizes_mb:
        for subs in args.subs:
            nbytes = mb << 20
            need = nbytes * (3 + 3 * subs) * 1.1  # model + 2 arenas + per actor: 2 buffers + target
            if need > mem_available():
                print(f"{mb:>6}MB {subs:>4}  skipped: needs ~{need / 2**30:.1f} GiB, "
                      f"{mem_available() / 2**30:.1f} GiB available")
                continue
            rounds = bench(nbytes, subs, args.rounds)
            bound = raw_bound(nbytes, subs)
            mc = memcpy_bound(make_model(nbytes)) * subs
            steady = rounds[-1][1]
            print(f"{mb:>6}MB {subs:>4} {rounds[-1][0]:>9.3f} {rounds[0][1]:>8.3f} {steady:>8.3f} {bound:>8.3f} "
                  f"{mc:>8.3f} {steady / bound:>12.2f} {steady / mc:>13.2f}")


if __name__ == "__main__":
    main()
