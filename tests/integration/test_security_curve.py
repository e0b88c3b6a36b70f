"""CURVE on the weight and feed channels with keys from files, against impostors in their own processes:
a publisher (or feeder) that binds the real port without the real secret key is ignored, whether it speaks
CURVE with its own keys or plain TCP; the actor keeps its last good weights; once the impostor leaves, the
same client reaches the real server again (a plain-TCP impostor fails the handshake with a protocol error,
after which libzmq would give up: the client makes its socket anew); and forged weight messages (a manifest
whose hash does not match, a lying layout) are rejected even on a channel an attacker reaches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Optional

import pytest
import torch
import zmq

from afd_async.config.cluster import ClusterConfig
from afd_async.security.curve import (CHANNEL_CLIENTS, CurveKeyError, client_keys, cluster_client_keys,
                                      cluster_server_keys, init_keys, server_keys)
from afd_async.store.redis_server import free_port
from afd_async.transport import (Batch, FeedClient, FeedServer, TransportTimeout, WeightPublisher, WeightsRejected,
                                 WeightSubscriber)
from afd_async.testing.waiting import wait_until
from afd_async.transport.weights_layout import Manifest, plan_layout, wmsg

LOCAL = "tcp://127.0.0.1:0"


def model(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(32, 16, generator=g), "b": torch.randn(16, generator=g)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture()
def keys_dir(tmp_path: Path) -> Path:
    d = tmp_path / "curve"
    assert sorted(init_keys(d)) == sorted(["feeder", "student-learner", "d-learner", "student-actor"])
    assert init_keys(d) == []  # existing keys are kept
    assert (d / "student-learner.key_secret").stat().st_mode & 0o077 == 0
    return d


_IMPOSTOR = """
import sys, torch, zmq
from afd_async.transport import CurveServerKeys, WeightPublisher
notify, fetch, mode = sys.argv[1:4]
curve = None
if mode == "curve":  # its own keys: it does not hold the learner's secret key
    pub, sec = zmq.curve_keypair()
    curve = CurveServerKeys(pub, sec)
with WeightPublisher(notify, fetch, curve=curve) as p:
    p.publish(50, {"w": torch.full((32, 16), 7.0), "b": torch.zeros(16)})
    print("published", flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
"""


def start_impostor(script: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "published", proc.stderr.read() if proc.stderr else ""
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


def test_keys_from_files_admit_only_the_roles_of_each_channel(keys_dir: Path) -> None:
    with WeightPublisher(LOCAL, LOCAL, curve=server_keys(keys_dir, "student-learner")) as pub:
        pub.publish(1, model(1))
        with WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint,
                              curve=client_keys(keys_dir, "student-actor", "student-learner")) as actor:
            assert same(actor.wait_for_version(1, timeout_s=10).state_dict, model(1))
        # the student learner's keys are good keys, but not for this channel (it is a client of the D channel)
        wrong_role = client_keys(keys_dir, "student-learner", "d-learner")
        wrong_role = type(wrong_role)(server_public=server_keys(keys_dir, "student-learner").public,
                                      public=wrong_role.public, secret=wrong_role.secret)
        with WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, curve=wrong_role) as other, \
                pytest.raises(TransportTimeout):
            other.wait_for_version(1, timeout_s=0.5)
        with WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as plain, pytest.raises(TransportTimeout):
            plain.wait_for_version(1, timeout_s=0.5)
    with pytest.raises(ValueError, match="not a client"):
        client_keys(keys_dir, "student-actor", "feeder")
    assert CHANNEL_CLIENTS["feeder"] == ("d-learner", "student-learner")


def test_an_impostor_weight_publisher_is_ignored_and_the_last_good_weights_stay(keys_dir: Path) -> None:
    notify, fetch = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    actor_keys = client_keys(keys_dir, "student-actor", "student-learner")
    learner_keys = server_keys(keys_dir, "student-learner")
    with WeightSubscriber(notify, fetch, curve=actor_keys, retry_s=0.2, query_interval_s=0.1) as actor:
        with WeightPublisher(notify, fetch, curve=learner_keys) as learner:
            learner.publish(1, model(1))
            actor.wait_for_version(1, timeout_s=10)
        # the learner is gone; an impostor binds its ports with CURVE keys of its own
        impostor = start_impostor(_IMPOSTOR, notify, fetch, "curve")
        try:
            with pytest.raises(TransportTimeout):
                actor.wait_for_version(2, timeout_s=1.5)
        finally:
            stop(impostor)
        assert actor.version == 1 and same(actor.current.state_dict, model(1)) and actor.announced < 50
        # the real learner (keys from the same files) comes back: the actor takes its next version
        with WeightPublisher(notify, fetch, curve=learner_keys) as learner:
            learner.publish(2, model(2))
            assert same(actor.wait_for_version(2, timeout_s=15).state_dict, model(2))
        # an impostor speaking plain TCP: nothing either; its weights are never replaced
        impostor = start_impostor(_IMPOSTOR, notify, fetch, "plain")
        try:
            with pytest.raises(TransportTimeout):
                actor.wait_for_version(3, timeout_s=1.5)
        finally:
            stop(impostor)
        assert actor.version == 2 and same(actor.current.state_dict, model(2)) and actor.announced < 50
        # the handshake with it failed (protocol error), after which libzmq gives up on the connection; the
        # actor made its socket anew, so the real learner back on the same ports reaches it again
        with WeightPublisher(notify, fetch, curve=learner_keys) as learner:
            learner.publish(3, model(3))
            assert same(actor.wait_for_version(3, timeout_s=15).state_dict, model(3))
            assert actor.stats.reconnects >= 1
            learner.publish(4, model(4))  # announcements reach it too (the SUB socket is connected)
            wait_until(lambda: actor.poll_announcements() >= 4, timeout_s=15)
            update = actor.poll_update(timeout_s=15)
            assert update is not None and update.version == 4 and same(update.state_dict, model(4))


_FAKE_FEEDER = """
import sys, torch, zmq
from afd_async.transport import Batch, CurveServerKeys, FeedServer
endpoint, mode = sys.argv[1:3]
curve = None
if mode == "curve":
    pub, sec = zmq.curve_keypair()
    curve = CurveServerKeys(pub, sec)
forged = lambda rank: Batch({"x": torch.full((2, 3), 666.0)}, {"i": -1}, token=0)
with FeedServer(endpoint, forged, curve=curve, peer_timeout_s=1.0):
    print("published", flush=True)
    sys.stdin.read()
"""


def test_an_impostor_feeder_gets_no_learner_and_feeds_no_batch(keys_dir: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cluster = ClusterConfig(curve_keys_dir=str(keys_dir))
    learner_keys = cluster_client_keys(cluster, "d-learner", "feeder")
    with FeedClient(endpoint, rank=0, window=1, curve=learner_keys) as learner:
        impostor = start_impostor(_FAKE_FEEDER, endpoint, "curve")
        try:
            with pytest.raises(TransportTimeout):
                learner.next(timeout_s=1.5)
        finally:
            stop(impostor)

        served: list[int] = []

        def real(rank: int) -> Optional[Batch]:  # one batch only: none may be left over for the impostor's turn
            if served:
                return None
            served.append(rank)
            return Batch({"x": torch.ones(2, 3)}, {"i": 1}, token=1)

        with FeedServer(endpoint, real, curve=cluster_server_keys(cluster, "feeder"), peer_timeout_s=1.0):
            got = learner.next(timeout_s=15)
            assert got.meta["i"] == 1 and torch.equal(got.tensors["x"], torch.ones(2, 3))
            learner.ack(got)
        # a plain-TCP impostor: no batch either
        impostor = start_impostor(_FAKE_FEEDER, endpoint, "plain")
        try:
            with pytest.raises(TransportTimeout):
                learner.next(timeout_s=1.5)
        finally:
            stop(impostor)
        assert learner.stats.batches == 1
        # the handshake with it failed (protocol error), after which libzmq gives up on the connection; the
        # same client made its socket anew and said hello again, so the real feeder back on the port feeds it

        def real2(rank: int) -> Batch:
            return Batch({"x": torch.full((2, 3), 2.0)}, {"i": 2}, token=2)

        with FeedServer(endpoint, real2, curve=cluster_server_keys(cluster, "feeder"), peer_timeout_s=1.0) as server:
            got = learner.next(timeout_s=15)
            assert got.meta["i"] == 2 and torch.equal(got.tensors["x"], torch.full((2, 3), 2.0))
            assert learner.stats.reconnects >= 1
            learner.ack(got)
            wait_until(lambda: server.stats().acked == 1, timeout_s=15)  # acked on the new connection
    assert cluster_server_keys(ClusterConfig(), "feeder") is None  # no keys dir: plain TCP, as before


def test_missing_or_foreign_key_files_fail_with_the_path_only(keys_dir: Path) -> None:
    (keys_dir / "d-learner.key").unlink()
    with pytest.raises(CurveKeyError, match=r"d-learner\.key is missing"):
        server_keys(keys_dir, "feeder")  # its allowed-client list needs the D learner's public key
    secret = (keys_dir / "student-actor.key_secret").read_text()
    (keys_dir / "student-actor.key_secret").write_text("not a certificate\n")
    with pytest.raises(CurveKeyError, match="student-actor.key_secret") as e:
        client_keys(keys_dir, "student-actor", "student-learner")
    assert secret not in str(e.value)


class _RogueRouter:
    """A raw ROUTER on a port an attacker reached: answers `latest` with a manifest of its making."""

    def __init__(self, manifest: dict, blob: bytes) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.manifest, self.blob = manifest, blob
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub_port = self.pub.bind_to_random_port("tcp://127.0.0.1")
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from afd_async.transport.weights_layout import decode_wmsg

        while not self._stop.is_set():
            self.pub.send(wmsg("announce", version=self.manifest["version"], sha256=self.manifest["sha256"],
                               total=self.manifest["total"], scope="full"))
            if not self.sock.poll(20):
                continue
            ident, data = self.sock.recv_multipart()
            msg = decode_wmsg(data)
            if msg["op"] == "latest":
                self.sock.send_multipart([ident, wmsg("manifest", rid=msg["rid"], manifest=self.manifest)])
            elif msg["op"] == "chunk":
                start = msg["index"] * self.manifest["chunk_size"]
                part = self.blob[start:start + self.manifest["chunk_size"]]
                self.sock.send_multipart([ident, wmsg("chunk", rid=msg["rid"], version=msg["version"],
                                                      index=msg["index"], sizes=[len(part)]), part])

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()
        self.pub.close()
        self.ctx.term()


def _forged_manifest(version: int, tensors: dict[str, torch.Tensor], *, honest_hash: bool) -> tuple[dict, bytes]:
    import hashlib

    entries, total = plan_layout(tensors)
    blob = bytearray(total)
    for e in entries:
        blob[e.offset:e.offset + e.nbytes] = tensors[e.name].contiguous().view(torch.uint8).numpy().tobytes()
    chunk = 256
    digests = [hashlib.sha256(bytes(blob[i:i + chunk])).digest() for i in range(0, total, chunk)]
    top = Manifest.top_digest(version, "full", total, chunk, entries, digests)
    m = Manifest(version, "full", total, chunk, tuple(entries), tuple(digests), top if honest_hash else "0" * 64)
    return m.to_wire(), bytes(blob)


def test_forged_weight_messages_are_rejected_and_the_last_good_weights_stay() -> None:
    evil = {"w": torch.full((32, 16), 7.0), "b": torch.zeros(16)}
    # 1. a manifest whose sha256 does not cover its fields (e.g. the version bumped after hashing)
    wire, blob = _forged_manifest(9, evil, honest_hash=False)
    # 2. a self-consistent manifest whose chunks then differ from what it hashed (tampered in flight)
    wire2, blob2 = _forged_manifest(9, evil, honest_hash=True)
    blob2 = blob2[:10] + bytes([blob2[10] ^ 0xFF]) + blob2[11:]
    # 3. a layout that lies: an entry reaching past the blob
    wire3, blob3 = _forged_manifest(9, evil, honest_hash=True)
    wire3["entries"][0][3] = wire3["total"]
    # 4. a genuine but older version replayed
    wire4, blob4 = _forged_manifest(0, evil, honest_hash=True)
    for forged, data, reason in ((wire, blob, "hash"), (wire2, blob2, "hash"), (wire3, blob3, "layout"),
                                 (wire4, blob4, "stale")):
        rogue = _RogueRouter(*_forged_manifest(1, model(1), honest_hash=True))  # serves a good version first
        try:
            with WeightSubscriber(f"tcp://127.0.0.1:{rogue.pub_port}", f"tcp://127.0.0.1:{rogue.port}") as actor:
                assert same(actor.wait_for_version(1, timeout_s=10).state_dict, model(1))
                rogue.manifest, rogue.blob = forged, data
                with pytest.raises(WeightsRejected) as e:
                    actor.fetch_latest(timeout_s=10)
                assert e.value.reason == reason
                assert actor.version == 1 and same(actor.current.state_dict, model(1))
                assert actor.stats.rejected == {reason: 1}
        finally:
            rogue.close()
