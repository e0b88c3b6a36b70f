"""Feed throughput on loopback vs a raw pyzmq PUSH/PULL of the same bytes, in one run.

Run: `python benchmarks/bench_feed.py [--gb 1.0]`. For each batch size (~2 MB,
~16 MB) and transport (tcp, ipc) it serves a pre-collated batch through
`FeedServer` → `FeedClient` (window 4, ack per batch) and pushes the same bytes
through a bare PUSH/PULL pair (copy=False, HWM 4), and prints GB/s and ratios.
Goal: feed ≥ 2 GB/s and close to raw.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

import torch
import zmq

from afd_async.transport import Batch, FeedClient, FeedServer


def make_batch(nbytes: int) -> Batch:
    latent = torch.randn(nbytes // 2).to(torch.bfloat16).reshape(-1, 1024)  # (B·C·F·h, w)-like
    return Batch({"student_latent": latent, "policy_version": torch.arange(8)}, {"pair_ids": list(range(8))})


def bench_feed(endpoint: str, batch: Batch, n: int) -> float:
    with FeedServer(endpoint, lambda rank: batch) as server, \
            FeedClient(server.endpoint, rank=0, window=4) as client:
        client.ack(client.next(timeout_s=30))  # connect + warm up
        t0 = time.perf_counter()
        total = 0
        for _ in range(n):
            b = client.next(timeout_s=30)
            total += b.nbytes
            client.ack(b)
        return total / (time.perf_counter() - t0) / 1e9


def bench_raw(endpoint: str, batch: Batch, n: int) -> float:
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    for s in (push, pull):
        s.setsockopt(zmq.SNDHWM, 4)
        s.setsockopt(zmq.RCVHWM, 4)
        s.setsockopt(zmq.LINGER, 0)
    if endpoint.endswith(":0"):
        port = push.bind_to_random_port(endpoint[:-2])
        endpoint = f"{endpoint[:-2]}:{port}"
    else:
        push.bind(endpoint)
    pull.connect(endpoint)
    bufs = [memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy()) for t in batch.tensors.values()]
    nbytes = sum(b.nbytes for b in bufs)

    def sender() -> None:
        for _ in range(n + 1):
            push.send_multipart([b"header", *bufs], copy=False)

    th = threading.Thread(target=sender)
    th.start()
    pull.recv_multipart(copy=False)
    t0 = time.perf_counter()
    for _ in range(n):
        pull.recv_multipart(copy=False)
    rate = n * nbytes / (time.perf_counter() - t0) / 1e9
    th.join()
    push.close()
    pull.close()
    ctx.term()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gb", type=float, default=1.0, help="bytes moved per measurement, in GB")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp()
    print(f"{'batch':>8} {'transport':>9} {'feed GB/s':>10} {'raw GB/s':>9} {'feed/raw':>9}")
    for mb in (2, 16):
        batch = make_batch(mb << 20)
        n = max(16, int(args.gb * 1e9 / (mb << 20)))
        for transport, endpoint in (("tcp", "tcp://127.0.0.1:0"), ("ipc", f"ipc://{tmp}/bench-{mb}")):
            raw = bench_raw(endpoint if transport == "tcp" else endpoint + "-raw", batch, n)
            feed = bench_feed(endpoint, batch, n)
            print(f"{mb:>6}MB {transport:>9} {feed:>10.2f} {raw:>9.2f} {feed / raw:>9.2f}")


if __name__ == "__main__":
    main()
