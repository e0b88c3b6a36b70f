"""Weight sync over real ZeroMQ: versions, hashes, NaN, late joiners, timeouts, foreign bytes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
import torch
import zmq

from afd_async.codec.msg import pack
from afd_async.transport import TransportTimeout, WeightPublisher, WeightsRejected, WeightSubscriber
from afd_async.testing.waiting import wait_until
from afd_async.transport.weights_layout import wmsg

LOCAL = "tcp://127.0.0.1:0"


def model(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "blocks.0.attn.weight": torch.randn(64, 48, generator=g).to(torch.bfloat16),
        "blocks.0.attn.bias": torch.randn(48, generator=g),
        "head.weight": torch.randn(30, 20, generator=g).half().t(),  # non-contiguous
        "step": torch.tensor(seed, dtype=torch.int64),
        "empty": torch.empty(0, 3),
    }


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def test_full_and_lora_versions_round_trip_in_small_chunks() -> None:
    with WeightPublisher(LOCAL, LOCAL, chunk_size=1024) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, window=3) as sub:
        m1 = pub.publish(1, model(1))
        assert m1.n_chunks > 5
        u1 = sub.wait_for_version(1, timeout_s=10)
        assert (u1.version, u1.sha256, u1.scope) == (1, m1.sha256, "full") and same(u1.state_dict, model(1))
        lora = {"lora_A": torch.randn(8, 64), "lora_B": torch.zeros(64, 8)}
        pub.publish(2, lora, scope="lora")
        wait_until(lambda: sub.poll_announcements() == 2)
        u2 = sub.poll_update(timeout_s=10)
        assert u2 is not None and u2.scope == "lora" and same(u2.state_dict, lora)
        assert sub.poll_update(timeout_s=10) is None  # nothing newer
        assert same(u1.state_dict, model(1))  # double buffer: the previous update is still intact


def test_a_subscriber_that_missed_the_announcement_hears_the_newest_version_again() -> None:
    """PUB drops announcements sent before a subscriber connects (slow joiner); the publisher repeats
    the newest one, so announcements alone bring a late or reconnecting subscriber up to date."""
    with WeightPublisher(LOCAL, LOCAL, reannounce_s=0.05) as pub:
        pub.publish(1, model(1))
        pub.publish(2, model(2))  # both one-shot announcements went out to nobody
        with WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
            wait_until(lambda: sub.poll_announcements() == 2, timeout_s=15)
            update = sub.poll_update(timeout_s=10)
            assert update is not None and update.version == 2 and same(update.state_dict, model(2))
    with pytest.raises(ValueError, match="reannounce_s"):
        WeightPublisher(LOCAL, LOCAL, reannounce_s=0)


def test_versions_are_monotonic_on_both_ends(tmp_path: Any) -> None:
    notify, fetch = f"ipc://{tmp_path}/n.sock", f"ipc://{tmp_path}/f.sock"
    with WeightSubscriber(notify, fetch, retry_s=0.2) as sub:
        with WeightPublisher(notify, fetch) as pub:
            pub.publish(5, model(5))
            with pytest.raises(ValueError, match="not above"):
                pub.publish(5, model(6))
            assert sub.wait_for_version(5, timeout_s=10).version == 5
        with WeightPublisher(notify, fetch) as restarted:  # e.g. restored from an older checkpoint
            restarted.publish(3, model(3))
            with pytest.raises(WeightsRejected) as e:
                sub.fetch_latest(timeout_s=10)
            assert e.value.reason == "stale"
        assert sub.version == 5 and same(sub.current.state_dict, model(5))
        assert sub.stats.rejected == {"stale": 1}


@pytest.mark.parametrize("chunk_hash", ["sha256", "xxh3_128"])
def test_corrupted_chunk_is_rejected_and_last_good_kept(chunk_hash: str) -> None:
    with WeightPublisher(LOCAL, LOCAL, chunk_size=256, copy=False, chunk_hash=chunk_hash) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
        pub.publish(1, model(1))
        sub.wait_for_version(1, timeout_s=10)
        tensors = model(2)
        pub.publish(2, tensors)
        tensors["blocks.0.attn.bias"][7] += 1.0  # the bytes served no longer match the published hash
        with pytest.raises(WeightsRejected, match=f"{chunk_hash} mismatch") as e:
            sub.fetch_latest(timeout_s=10)
        assert e.value.reason == "hash" and e.value.version == 2
        assert sub.version == 1 and same(sub.current.state_dict, model(1))
        pub.publish(3, model(3))
        assert sub.wait_for_version(3, timeout_s=10).version == 3 and same(sub.current.state_dict, model(3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(bad: float) -> None:
    with WeightPublisher(LOCAL, LOCAL) as pub, WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
        assert pub.publish(1, model(1)).finite  # checked while copied: subscribers skip their own pass
        sub.wait_for_version(1, timeout_s=10)
        poisoned = model(2)
        poisoned["blocks.0.attn.weight"][3, 4] = bad
        assert not pub.publish(2, poisoned).finite  # not vouched for: each subscriber checks, and refuses
        with pytest.raises(WeightsRejected, match="NaN/Inf") as e:
            sub.fetch_latest(timeout_s=10)
        assert e.value.reason == "nonfinite" and sub.version == 1 and same(sub.current.state_dict, model(1))
    with WeightPublisher(LOCAL, LOCAL, check_finite=True) as strict, pytest.raises(ValueError, match="NaN/Inf"):
        strict.publish(1, poisoned)


_LATE_ACTOR = """
import sys
from afd_async.transport import WeightSubscriber
with WeightSubscriber(sys.argv[1], sys.argv[2]) as sub:
    u = sub.wait_for_version(0, timeout_s=30)
    print(u.version, u.sha256, float(u.state_dict["blocks.0.attn.bias"].sum()), flush=True)
"""


def test_late_joining_actor_process_gets_the_latest_version() -> None:
    with WeightPublisher(LOCAL, LOCAL, chunk_size=512) as pub:
        for v in (1, 2, 3):
            manifest = pub.publish(v, model(v))
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(_LATE_ACTOR), pub.notify_endpoint,
                              pub.fetch_endpoint], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    version, sha, bias_sum = out.stdout.split()
    assert int(version) == 3 and sha == manifest.sha256
    assert float(bias_sum) == pytest.approx(float(model(3)["blocks.0.attn.bias"].sum()))


def test_wait_for_version_times_out_with_a_clear_error() -> None:
    with WeightPublisher(LOCAL, LOCAL) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, query_interval_s=0.05) as sub:
        pub.publish(1, model(1))
        t0 = time.monotonic()
        with pytest.raises(TransportTimeout, match=r"no weights version >= 5 within 0.3s: holding 1"):
            sub.wait_for_version(5, timeout_s=0.3)
        assert time.monotonic() - t0 < 2.0 and sub.stats.timeouts == 1
    with WeightSubscriber("tcp://127.0.0.1:1", "tcp://127.0.0.1:1") as nobody, \
            pytest.raises(TimeoutError, match="holding -1"):
        nobody.wait_for_version(0, timeout_s=0.2)


def test_refresh_bounds_the_lag_of_a_scoring_model() -> None:
    with WeightPublisher(LOCAL, LOCAL) as pub, WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
        pub.publish(1, model(1))
        assert sub.refresh(max_lag=1, timeout_s=10).version == 1
        pub.publish(2, model(2))
        wait_until(lambda: sub.poll_announcements() == 2)
        assert sub.refresh(max_lag=1, timeout_s=10).version == 1  # one behind is within k_D = 1
        pub.publish(3, model(3))
        wait_until(lambda: sub.poll_announcements() == 3)
        assert sub.refresh(max_lag=1, timeout_s=10).version == 3  # two behind: fetch the latest


def test_foreign_bytes_on_both_sockets_are_rejected_and_counted() -> None:
    ctx = zmq.Context.instance()
    with WeightPublisher(LOCAL, LOCAL) as pub:
        pub.publish(1, model(1))
        rogue = ctx.socket(zmq.DEALER)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.connect(pub.fetch_endpoint)
        rogue.send(b"\x00\x01foreign")
        rogue.send(pack({"kind": "weights", "schema": 7, "op": "latest", "rid": 1}))
        rogue.send(wmsg("chunk", rid=1, version="x", index=0))
        wait_until(lambda: pub.stats.rejected == 3)
        rogue.close()
        rogue_pub = ctx.socket(zmq.PUB)
        rogue_pub.setsockopt(zmq.LINGER, 0)
        port = rogue_pub.bind_to_random_port("tcp://127.0.0.1")
        with WeightSubscriber(f"tcp://127.0.0.1:{port}", pub.fetch_endpoint) as sub:
            def garbage_arrived() -> bool:
                rogue_pub.send(b"\xff not msgpack")
                sub.poll_announcements()
                return bool(sub.stats.rejected)
            wait_until(garbage_arrived)
            assert sub.wait_for_version(1, timeout_s=10).version == 1 and same(sub.current.state_dict, model(1))
        rogue_pub.close()


def test_curve_subscriber_without_an_allowed_key_gets_nothing() -> None:
    from afd_async.transport import CurveClientKeys, CurveServerKeys

    server_pub, server_sec = zmq.curve_keypair()
    good_pub, good_sec = zmq.curve_keypair()
    bad_pub, bad_sec = zmq.curve_keypair()
    keys = CurveServerKeys(server_pub, server_sec, allowed_clients=[good_pub])
    with WeightPublisher(LOCAL, LOCAL, curve=keys) as pub:
        pub.publish(1, model(1))
        good = CurveClientKeys(server_pub, good_pub, good_sec)
        with WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, curve=good) as sub:
            assert sub.wait_for_version(1, timeout_s=10).version == 1
        bad = CurveClientKeys(server_pub, bad_pub, bad_sec)
        with WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint, curve=bad) as intruder, \
                pytest.raises(TransportTimeout):
            intruder.wait_for_version(1, timeout_s=0.5)
        with WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as plain, pytest.raises(TransportTimeout):
            plain.wait_for_version(1, timeout_s=0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64])
def test_finite_check_sees_nan_and_inf_in_every_float_width(dtype: torch.dtype) -> None:
    from afd_async.transport.weights_layout import check_finite

    x = torch.randn(5000, dtype=dtype)
    assert check_finite({"x": x, "i": torch.arange(3)}) is None
    for bad in (float("nan"), float("inf"), float("-inf")):
        y = x.clone()
        y[4321] = bad
        assert check_finite({"x": x, "y": y}, block=1000) == "y"
