"""Feed throughput on loopback (FeedServer → FeedClient) against raw ZeroMQ PUSH/PULL of the same frames, in one run.

As in the system, the sender runs in its own process (the feeder role; spawned
once) and the receiver in this one (a learner rank). For each batch size the
sender serves one pre-collated batch again and again:

- feed: `FeedServer` (ROUTER, producer + I/O threads, credits) → `FeedClient`
  (DEALER, I/O thread, window 4, `next` + `ack` per batch), tensors sent and
  received as zero-copy frames;
- raw (the bound): a bare PUSH → PULL of the same frames (`[header, *tensor views]`,
  `copy=False` both ends, HWM 4), no credits, no acks, no threads but the sender's;
- server → bare DEALER (diagnostic): the same FeedServer read by a DEALER loop on
  the receiving thread (credits and acks by hand, no FeedClient I/O thread), which
  splits the feed's cost between its server and its client.

The three alternate `repeats` times (medians reported). Goal: feed ≥ 2 GB/s and
close to raw.

    python benchmarks/bench_feed.py [--seconds 40]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from typing import Any, Callable

import torch
import zmq

from afd_async.transport import Batch, FeedClient, FeedServer
from afd_async.transport.feed_wire import control, decode_batch, decode_control, encode_batch

HEADLINE_MB = 16  # the batch size `measure` reports as feed_gb_per_s (about four Wan 1.3B latent rows)
SIZES_MB = (2, 16, 64)


def make_batch(nbytes: int) -> Batch:
    """A collated batch of about `nbytes`: one bf16 latent tensor and a small int tensor."""
    latent = torch.randn(nbytes // 2).to(torch.bfloat16).reshape(-1, 1024)  # (B·C·F·h, w)-like
    return Batch({"student_latent": latent, "policy_version": torch.arange(8)}, {"pair_ids": list(range(8))})


def _serve_feed(endpoint: str, batch: Batch, conn: Any) -> None:
    with FeedServer(endpoint, lambda rank: batch, max_unacked=64) as server:
        conn.send(server.endpoint)
        conn.recv()  # stop


def _serve_raw(endpoint: str, batch: Batch, conn: Any) -> None:
    frames = encode_batch(0, batch)  # the feed's own frames: header + tensor views
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 4)
    push.setsockopt(zmq.LINGER, 0)
    if endpoint.endswith(":0"):
        endpoint = f"{endpoint[:-2]}:{push.bind_to_random_port(endpoint[:-2])}"
    else:
        push.bind(endpoint)
    conn.send(endpoint)
    while not conn.poll():
        try:
            push.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            push.poll(50, zmq.POLLOUT)
    conn.recv()
    push.close()
    ctx.term()


def _sender(conn: Any) -> None:
    """The sender process: serves `(kind, endpoint, nbytes)` requests one at a time until None."""
    torch.set_num_threads(1)
    batches: dict[int, Batch] = {}
    while (req := conn.recv()) is not None:
        kind, endpoint, nbytes = req
        if nbytes not in batches:
            batches[nbytes] = make_batch(nbytes)
        batch = batches[nbytes]
        (_serve_feed if kind == "feed" else _serve_raw)(endpoint, batch, conn)


class Sender:
    """A spawned sender process (the feeder's side); `serve` runs one receiver loop against it."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_sender, args=(child,), daemon=True)
        self._proc.start()

    def serve(self, kind: str, endpoint: str, nbytes: int, receive: Callable[[str], float]) -> float:
        """Have the sender serve `kind` ("feed" or "raw") on `endpoint`; `receive(endpoint)` here; its result."""
        self._conn.send((kind, endpoint, nbytes))
        if not self._conn.poll(120):
            raise TimeoutError(f"the sender process did not start serving {kind}")
        try:
            return receive(self._conn.recv())
        finally:
            self._conn.send("stop")

    def close(self) -> None:
        """Stop the sender process (killed if it does not end within 10 s)."""
        self._conn.send(None)
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


def recv_feed(endpoint: str, seconds: float) -> float:
    """GB/s received through a FeedClient over `seconds` (after one warm-up batch)."""
    with FeedClient(endpoint, rank=0, window=4) as client:
        client.ack(client.next(timeout_s=60))
        total, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            b = client.next(timeout_s=30)
            total += b.nbytes
            client.ack(b)
        return total / (time.perf_counter() - t0) / 1e9


def recv_dealer(endpoint: str, seconds: float) -> float:
    """GB/s from the FeedServer to a bare DEALER loop on this thread (hello, credit and ack by hand, no
    FeedClient I/O thread): with `recv_feed`, it splits the feed's cost between server and client."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sock.send(control("hello", rank=0))
    sock.send(control("credit", n=4))
    try:
        total, t0 = 0, None
        while t0 is None or time.perf_counter() - t0 < seconds:
            frames = sock.recv_multipart(copy=False)
            msg = decode_control(frames[0].buffer, inbound=False)
            if msg["op"] != "batch":
                continue
            batch = decode_batch(msg, frames[1:])
            if t0 is None:  # the first batch is the warm-up
                t0 = time.perf_counter()
            else:
                total += batch.nbytes
            sock.send(control("ack", seqs=[batch.seq]))
            sock.send(control("credit", n=1))
        sock.send(control("bye"))
        return total / (time.perf_counter() - t0) / 1e9
    finally:
        sock.close()
        ctx.term()


def recv_raw(endpoint: str, seconds: float) -> float:
    """GB/s of tensor frames received through a bare PULL over `seconds` (after one warm-up message)."""
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 4)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(endpoint)
    try:
        pull.recv_multipart(copy=False)
        total, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            frames = pull.recv_multipart(copy=False)
            total += sum(f.buffer.nbytes for f in frames[1:])
        return total / (time.perf_counter() - t0) / 1e9
    finally:
        pull.close()
        ctx.term()


def measure(seconds: float = 40.0, repeats: int = 3, sizes_mb: tuple[int, ...] = SIZES_MB,
            transports: tuple[str, ...] = ("tcp",)) -> dict[str, Any]:
    """Feed vs raw PUSH/PULL GB/s per batch size and transport, within about `seconds` of loops.

    Process start-up (spawn, torch import) is not counted in `seconds`.

    Returns:
        feed_ratio, feed_gb_per_s, raw_gb_per_s (tcp at HEADLINE_MB, or the first size measured),
        and `rows`: [{batch_mb, transport, feed_gb_per_s, raw_gb_per_s, feed_ratio,
        server_to_bare_dealer_gb_per_s}, ...].
    """
    share = seconds / (2.5 * len(sizes_mb) * len(transports) * repeats)
    tmp = tempfile.mkdtemp(prefix="afd-bench-feed-")
    rows = []
    sender = Sender()
    try:
        for mb in sizes_mb:
            for transport in transports:
                feed, raw, dealer = [], [], []
                for i in range(repeats):
                    endpoint = "tcp://127.0.0.1:0" if transport == "tcp" else f"ipc://{tmp}/{mb}-{i}"
                    raw.append(sender.serve("raw", endpoint + ("" if transport == "tcp" else "-raw"), mb << 20,
                                            lambda ep: recv_raw(ep, share)))
                    feed.append(sender.serve("feed", endpoint, mb << 20, lambda ep: recv_feed(ep, share)))
                    dealer.append(sender.serve("feed", endpoint + ("" if transport == "tcp" else "-d"), mb << 20,
                                               lambda ep: recv_dealer(ep, share / 2)))
                f, r = statistics.median(feed), statistics.median(raw)
                rows.append({"batch_mb": mb, "transport": transport, "feed_gb_per_s": f, "raw_gb_per_s": r,
                             "feed_ratio": f / r, "server_to_bare_dealer_gb_per_s": statistics.median(dealer)})
    finally:
        sender.close()
    head = next((x for x in rows if x["batch_mb"] == HEADLINE_MB and x["transport"] == "tcp"), rows[0])
    return {"feed_ratio": head["feed_ratio"], "feed_gb_per_s": head["feed_gb_per_s"],
            "raw_gb_per_s": head["raw_gb_per_s"], "headline_batch_mb": head["batch_mb"], "repeats": repeats,
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0, help="total time of the measured loops")
    parser.add_argument("--repeats", type=int, default=3, help="alternations of feed and raw (median reported)")
    parser.add_argument("--ipc", action="store_true", help="also measure ipc:// (same host, Unix socket)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    m = measure(args.seconds, args.repeats, transports=("tcp", "ipc") if args.ipc else ("tcp",))
    print(f"{'batch':>8} {'transport':>9} {'feed GB/s':>10} {'raw GB/s':>9} {'feed/raw':>9} {'server→DEALER GB/s':>19}")
    for row in m["rows"]:
        print(f"{row['batch_mb']:>6}MB {row['transport']:>9} {row['feed_gb_per_s']:>10.2f} {row['raw_gb_per_s']:>9.2f} "
              f"{row['feed_ratio']:>9.2f} {row['server_to_bare_dealer_gb_per_s']:>19.2f}")
    print(f"feed_ratio = {m['feed_ratio']:.2f} at {m['headline_batch_mb']} MB over tcp; "
          f"feed {m['feed_gb_per_s']:.2f} GB/s (goal >= 2)")


if __name__ == "__main__":
    main()
