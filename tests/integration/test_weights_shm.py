"""Same-host weight sync through shared memory: one copy, seqlock, digests; ZeroMQ as the fallback."""

from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from afd_async.transport import WeightPublisher, WeightsRejected, WeightSubscriber
from afd_async.transport.weights_shm import HEADER, default_shm_dir

LOCAL = "tcp://127.0.0.1:0"
pytestmark = pytest.mark.skipif(default_shm_dir() is None, reason="no /dev/shm")


def model(seed: int, n: int = 4096) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(n, generator=g).to(torch.bfloat16), "b.bias": torch.randn(33, generator=g),
            "step": torch.tensor(seed)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def segments() -> list[Path]:
    """This process's weight segments (the publisher runs in the test process)."""
    shm_dir = default_shm_dir()
    assert shm_dir is not None
    return sorted(shm_dir.glob(f"afd-weights-{os.getpid()}-*"))


def poke(path: Path, offset: int, data: bytes) -> None:
    """Write into a segment from outside the publisher (what a racing writer or bad memory would do)."""
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        mm[offset : offset + len(data)] = data


def test_same_host_subscriber_reads_shared_memory_and_the_knob_turns_it_off() -> None:
    with WeightPublisher(LOCAL, LOCAL, chunk_size=1024) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as shm_sub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, shm=False) as zmq_sub:
        m = pub.publish(1, model(1))
        for sub in (shm_sub, zmq_sub):
            u = sub.wait_for_version(1, timeout_s=10)
            assert (u.version, u.sha256) == (1, m.sha256) and same(u.state_dict, model(1))
        assert (shm_sub.stats.shm_reads, zmq_sub.stats.shm_reads) == (1, 0)
        assert pub.stats.chunks_served == m.n_chunks  # only the ZeroMQ subscriber asked for chunks
        assert len(segments()) == 1
    assert segments() == []  # close() unlinks them
    with WeightPublisher(LOCAL, LOCAL, shm=False) as pub, WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
        pub.publish(1, model(1))
        assert same(sub.wait_for_version(1, timeout_s=10).state_dict, model(1)) and sub.stats.shm_reads == 0
        assert segments() == []


def test_a_read_overlapping_a_rewrite_is_torn_and_fetched_over_zeromq() -> None:
    with WeightPublisher(LOCAL, LOCAL, chunk_size=1024) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
        pub.publish(1, model(1))
        (path,) = segments()
        poke(path, 8, struct.pack("<Q", 7))  # seq odd: a writer is (as far as a reader can tell) mid-write
        u = sub.wait_for_version(1, timeout_s=10)
        assert same(u.state_dict, model(1)) and (sub.stats.torn, sub.stats.shm_reads) == (1, 0)


def test_corrupt_shared_memory_is_rejected_and_last_good_kept() -> None:
    with WeightPublisher(LOCAL, LOCAL, chunk_size=1024, keep_versions=1) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
        pub.publish(1, model(1))
        sub.wait_for_version(1, timeout_s=10)
        pub.publish(2, model(2))  # a second segment: version 1's is kept one more publish
        newest = max(segments(), key=lambda p: p.stat().st_mtime_ns)
        poke(newest, HEADER + 100, b"\xff\x7f")  # seq unchanged: not a torn read, a corrupt one
        with pytest.raises(WeightsRejected, match="chunk 0 xxh3_128 mismatch") as e:
            sub.fetch_latest(timeout_s=10)
        assert e.value.reason == "hash" and sub.version == 1 and same(sub.current.state_dict, model(1))


def test_racing_publishes_never_hand_out_a_mixed_version() -> None:
    """keep_versions=1 reuses a segment two publishes later, so readers race real rewrites; every update
    taken must be exactly one version (a constant model), never a mix of two."""
    def constant(v: int) -> dict[str, torch.Tensor]:
        return {"w": torch.full((1 << 18,), float(v))}

    stop, errors = threading.Event(), []

    def learner(pub: WeightPublisher) -> None:
        try:
            v = 1
            while not stop.is_set() and v < 5000:
                v += 1
                pub.publish(v, constant(v))
        except Exception as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    with WeightPublisher(LOCAL, LOCAL, chunk_size=64 << 10, keep_versions=1) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, query_interval_s=0.01) as sub:
        pub.publish(1, constant(1))
        sub.wait_for_version(1, timeout_s=10)
        thread = threading.Thread(target=learner, args=(pub,))
        thread.start()
        taken = 0
        try:
            while taken < 30:
                try:
                    u = sub.fetch_latest(timeout_s=10)
                except WeightsRejected as e:
                    assert e.reason in ("gone", "stale"), e  # the version moved on under a ZeroMQ fallback
                    continue
                if u is not None:
                    w = u.state_dict["w"]
                    assert torch.equal(w, torch.full_like(w, float(u.version))), f"mixed read of v{u.version}"
                    taken += 1
        finally:
            stop.set()
            thread.join()
        assert not errors and sub.stats.shm_reads > 0


def test_a_segment_this_subscriber_cannot_open_means_zeromq() -> None:
    """E.g. a container on the same host with its own /dev/shm: the named file is not there."""
    with WeightPublisher(LOCAL, LOCAL, chunk_size=1024) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
        pub.publish(1, model(1))
        (path,) = segments()
        path.unlink()  # the publisher keeps its mapping; this subscriber cannot open the file
        assert same(sub.wait_for_version(1, timeout_s=10).state_dict, model(1))
        assert (sub.stats.shm_reads, sub.stats.torn) == (0, 0) and pub.stats.chunks_served > 0


def test_segments_of_a_dead_publisher_are_removed_by_the_next_one() -> None:
    """A SIGKILLed learner cannot unlink its segments; /dev/shm is memory, so the next publisher sweeps them."""
    code = ("import os, torch; from afd_async.transport import WeightPublisher\n"
            "pub = WeightPublisher('tcp://127.0.0.1:0', 'tcp://127.0.0.1:0'); pub.publish(1, {'w': torch.ones(8)})\n"
            "print(os.getpid(), flush=True); os._exit(0)\n")  # exits without close(), as a killed learner does
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    shm_dir = default_shm_dir()
    assert shm_dir is not None
    left = list(shm_dir.glob(f"afd-weights-{int(out.stdout)}-*"))
    assert len(left) == 1
    with WeightPublisher(LOCAL, LOCAL):
        assert not left[0].exists()
