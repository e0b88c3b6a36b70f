"""Same-host weight sync through shared memory: one copy, seqlock, digests; ZeroMQ as the fallback."""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
import zmq

from afd_async.transport import WeightPublisher, WeightsRejected, WeightSubscriber, WeightsUpdate
from afd_async.transport.weights_layout import wmsg
from afd_async.transport.weights_shm import default_shm_dir, host_id

LOCAL = "tcp://127.0.0.1:0"
pytestmark = pytest.mark.skipif(default_shm_dir() is None, reason="no /dev/shm")

# The host's follower slots (`weights_follow.follow_slot`) are shared with every other process here, test
# workers included: the subscribers of the tests that must follow a write take one of many slots, so a role of
# another test holding the default one does not turn their follow into an ordinary read.
FOLLOW = dict(max_followers=64)


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


def blob_offset(path: Path) -> int:
    """Where a segment's blob starts (its header says: after the chunk stamps, page aligned)."""
    with open(path, "rb") as f:
        return struct.unpack_from("<8sQq16sQQQ", f.read(64))[-1]


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
        poke(newest, blob_offset(newest) + 100, b"\xff\x7f")  # seq unchanged: not a torn read, a corrupt one
        with pytest.raises(WeightsRejected, match="chunk 0 xxh3_128 mismatch") as e:
            sub.fetch_latest(timeout_s=10)
        assert e.value.reason == "hash" and sub.version == 1 and same(sub.current.state_dict, model(1))


def constant(v: int, n: int) -> dict[str, torch.Tensor]:
    """A model every element of which is `v`: a mix of two versions shows."""
    return {"w": torch.full((n,), float(v))}


def assert_one_version(u: WeightsUpdate) -> None:
    w = u.state_dict["w"]
    assert torch.equal(w, torch.full_like(w, float(u.version))), f"mixed read of v{u.version}"


@contextlib.contextmanager
def publishing_in_a_loop(pub: WeightPublisher, n: int) -> Iterator[None]:
    """A learner thread publishing versions 2, 3, … (`constant` models of `n` elements) while the block runs;
    an error it raised fails the test once the block ends."""
    stop, errors = threading.Event(), []

    def learner() -> None:
        try:
            v = 1
            while not stop.is_set() and v < 5000:
                v += 1
                pub.publish(v, constant(v, n))
        except Exception as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    thread = threading.Thread(target=learner)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    assert not errors, errors


def test_racing_publishes_never_hand_out_a_mixed_version() -> None:
    """keep_versions=1 reuses a segment two publishes later, so readers race real rewrites; every update
    taken must be exactly one version (a constant model), never a mix of two."""
    n = 1 << 18
    with WeightPublisher(LOCAL, LOCAL, chunk_size=64 << 10, keep_versions=1) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, query_interval_s=0.01) as sub:
        pub.publish(1, constant(1, n))
        sub.wait_for_version(1, timeout_s=10)
        taken = 0
        with publishing_in_a_loop(pub, n):
            while taken < 30:
                try:
                    u = sub.fetch_latest(timeout_s=10)
                except WeightsRejected as e:
                    assert e.reason in ("gone", "stale"), e  # the version moved on under a ZeroMQ fallback
                    continue
                if u is not None:
                    assert_one_version(u)
                    taken += 1
        assert sub.stats.shm_reads > 0


def subscribed(sub: WeightSubscriber, version: int) -> None:
    """Return once the SUB socket has heard `version` announced (the publisher repeats it every `reannounce_s`):
    from then on every notice the publisher sends reaches this subscriber. Reads only the SUB socket."""
    deadline = time.monotonic() + 10
    while sub.poll_announcements() < version:
        assert time.monotonic() < deadline, "the subscriber never heard an announcement"
        sub._sub.poll(50)  # noqa: SLF001 - block on the socket itself, not a sleep


def test_a_waiting_subscriber_copies_chunks_while_the_publisher_writes_them() -> None:
    """The `begin` notice and the chunk stamps: a subscriber already waiting follows the write chunk by chunk
    (`shm_follows`), takes exactly the published bytes, and never asks for a chunk over ZeroMQ. Whether the
    subscriber wakes before a 32 MiB write ends is up to the scheduler, so a few versions are tried."""
    n = 8 << 20  # 32 MiB of float32 in 1 MiB chunks
    with WeightPublisher(LOCAL, LOCAL, chunk_size=1 << 20, keep_versions=1, reannounce_s=0.05) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, **FOLLOW) as sub:
        pub.publish(1, constant(1, n))
        subscribed(sub, 1)
        for v in range(2, 10):
            model_v = constant(v, n)
            writer = threading.Thread(target=pub.publish, args=(v, model_v))
            writer.start()
            u = sub.wait_for_version(v, timeout_s=30)
            writer.join()
            assert u.version == v and same(u.state_dict, model_v)
            if sub.stats.shm_follows:
                break
        assert sub.stats.shm_follows >= 1 and sub.stats.torn == 0
        assert pub.stats.chunks_served == 0  # every version came out of shared memory
        assert sub.stats.shm_reads == sub.stats.updates


def test_following_racing_rewrites_never_hands_out_a_mixed_version() -> None:
    """keep_versions=1 reuses a segment two publishes later, so a subscriber following one write races the
    rewrite of the same segment; every version taken (followed, read whole or over ZeroMQ) is one version."""
    n = 4 << 20  # 16 MiB in 256 KiB chunks: a write takes milliseconds, a follow can be overtaken
    with WeightPublisher(LOCAL, LOCAL, chunk_size=256 << 10, keep_versions=1, reannounce_s=0.05) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, **FOLLOW, query_interval_s=0.01) as sub:
        pub.publish(1, constant(1, n))
        subscribed(sub, 1)
        taken = 0
        with publishing_in_a_loop(pub, n):
            while taken < 20:
                try:
                    u = sub.wait_for_version(sub.version + 1, timeout_s=30)
                except WeightsRejected as e:
                    assert e.reason in ("gone", "stale"), e
                    continue
                assert_one_version(u)
                taken += 1
        assert sub.stats.updates >= 20 and sub.stats.shm_follows > 0


def test_a_refused_write_is_never_taken_by_a_subscriber_following_it() -> None:
    """check_finite refuses a version after writing it (the NaN is in its last chunk): a subscriber following that
    write copies every chunk, but the write is abandoned, never committed or served; the next version is taken."""
    n = 8 << 20
    bad = constant(2, n)
    bad["w"][-1] = float("nan")
    refused: list[BaseException] = []

    def learner(pub: WeightPublisher) -> None:
        try:
            pub.publish(2, bad)
        except ValueError as e:
            refused.append(e)
        pub.publish(3, constant(3, n))

    with WeightPublisher(LOCAL, LOCAL, chunk_size=1 << 20, check_finite=True, reannounce_s=0.05) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, **FOLLOW) as sub:
        pub.publish(1, constant(1, n))
        subscribed(sub, 1)
        writer = threading.Thread(target=learner, args=(pub,))
        writer.start()
        u = sub.wait_for_version(2, timeout_s=30)
        writer.join()
        assert len(refused) == 1 and "NaN/Inf" in str(refused[0])
        assert u.version == 3 and same(u.state_dict, constant(3, n)) and sub.stats.rejected is None


def test_a_forged_begin_notice_is_not_followed_and_does_not_spoil_the_real_segment() -> None:
    """A plain-TCP peer on the announcement port can send any `begin`: one naming the learner's real segment with
    another token is not followed, and the real version is still read out of that segment."""
    ctx = zmq.Context.instance()
    with WeightPublisher(LOCAL, LOCAL, chunk_size=1024) as pub:
        real = pub.publish(1, model(1))
        (path,) = segments()
        rogue = ctx.socket(zmq.PUB)
        rogue.setsockopt(zmq.LINGER, 0)
        port = rogue.bind_to_random_port("tcp://127.0.0.1")
        forged = wmsg("begin", version=5, total=real.total, chunk_size=1024, chunk_hash="xxh3_128", host=host_id(),
                      shm={"host": host_id(), "path": str(path), "token": bytes(16)})
        try:
            with WeightSubscriber(f"tcp://127.0.0.1:{port}", pub.fetch_endpoint) as sub:
                deadline = time.monotonic() + 10
                while sub._begun is None:  # noqa: SLF001 - until the forged notice has been taken in
                    assert time.monotonic() < deadline, "the forged notice never arrived"
                    rogue.send(forged)
                    sub._sub.poll(50)  # noqa: SLF001
                    sub.poll_announcements()
                u = sub.wait_for_version(1, timeout_s=10)
                assert (u.version, u.sha256) == (1, real.sha256) and same(u.state_dict, model(1))
                assert (sub.stats.shm_reads, sub.stats.shm_follows) == (1, 0) and pub.stats.chunks_served == 0
        finally:
            rogue.close()


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
