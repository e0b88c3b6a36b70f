"""The student learner's critical path: θ_old published in the background (exactly the step's θ_old and version,
L set after serving, errors surface) and the wait for D overlapped with the step's forward passes (same numbers)."""

from __future__ import annotations

import copy
import threading

import pytest
import torch

from afd_async.config import load_config
from afd_async.models.factory import make_discriminator, make_student, make_text_encoder
from afd_async.runtime.background_publish import BackgroundPublisher, PublishFailed
from afd_async.runtime.student_learner import StudentLearner, d_copy
from afd_async.store.keys import RunKeys
from afd_async.train.objectives import get_objective
from afd_async.train.sync_loop import make_student_updater
from afd_async.transport import ReceivedBatch, WeightPublisher, WeightSubscriber

LOCAL = "tcp://127.0.0.1:0"


def _batch(cfg, group: int) -> ReceivedBatch:
    s, b = cfg.student, 2
    g = torch.Generator().manual_seed(group)
    video = lambda: (torch.rand(b, s.num_frames, s.height, s.width, 3, generator=g) * 255).to(torch.uint8)  # noqa: E731
    student = torch.rand(b, 3, s.num_frames, s.height, s.width, generator=g) * 2 - 1
    meta = {"group": group, "prompt_ids": ["p0", "p1"], "prompts": ["a red ball falls", "a pendulum swings"],
            "policy_versions": [0, 0], "pair_ids": ["a", "b"]}
    return ReceivedBatch(seq=group, tensors={"teacher": video(), "student": student}, meta=meta, nbytes=0)


def _learner(cfg, text, pub, client, *, d_sub=None, d_overlap: bool = False) -> StudentLearner:
    torch.manual_seed(0)
    upd = make_student_updater(cfg, make_student(cfg.student, text.dim))
    return StudentLearner(updater=upd, d=d_copy(make_discriminator(cfg.discriminator, text.dim)),
                          d_subscriber=d_sub, publisher=pub, client=client, keys=RunKeys(), encode_text=text.encode,
                          run_seed=0, warmup_groups=0, d_steps_per_batch=1, d_staleness=0, needs_d=True,
                          pixel_latent=True, rewards=get_objective("afd").make_rewards(cfg), d_overlap=d_overlap,
                          d_timeout_s=30)


def test_each_step_publishes_exactly_its_theta_old_while_the_next_step_runs(redis_client) -> None:
    cfg = load_config(["algo.name=afd"])
    text = make_text_encoder(cfg.text, cfg.student)
    keys = RunKeys()
    with WeightPublisher(LOCAL, LOCAL, chunk_size=4096) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
        learner = _learner(cfg, text, pub, redis_client)
        upd = learner.updater
        learner.publish()
        assert int(redis_client.get(keys.student_version)) == 0 == sub.wait_for_version(0, timeout_s=10).version
        expected = {}
        for group in range(3):  # step v+1 (and its θ_old soft update) runs while version v may still be publishing
            assert learner.process(_batch(cfg, group), threading.Event()) is not None
            expected[upd.version] = copy.deepcopy(upd.old.state_dict())
        learner.flush()
        assert int(redis_client.get(keys.student_version)) == upd.version == 3
        assert int(redis_client.hget(keys.status, "student_steps")) == 3
        update = sub.wait_for_version(3, timeout_s=10)
        assert update.version == 3 and pub.stats.published == 4
        assert all(torch.equal(update.state_dict[k], v) for k, v in expected[3].items())
        assert any(not torch.equal(expected[2][k], v) for k, v in expected[3].items())  # θ_old moved each step


def test_the_snapshot_is_taken_at_submit_and_l_is_set_only_once_served(redis_client) -> None:
    weights = {"w": torch.arange(1000, dtype=torch.float32), "b": torch.ones(7, dtype=torch.bfloat16)}
    before = copy.deepcopy(weights)
    served_when_announced = []
    with WeightPublisher(LOCAL, LOCAL) as pub, WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
        bg = BackgroundPublisher(pub)

        def announce() -> None:
            served_when_announced.append(pub.version)
            redis_client.set("L", 1)

        bg.submit(1, weights, then=announce)
        weights["w"].add_(1.0)  # the next step's θ_old soft update, maybe while version 1 is still publishing
        bg.flush()
        assert served_when_announced == [1] and int(redis_client.get("L")) == 1
        update = sub.wait_for_version(1, timeout_s=10)
        assert all(torch.equal(update.state_dict[k], v) for k, v in before.items())
        bg.close()


def test_a_failed_background_publish_is_raised_by_the_next_submit(redis_client) -> None:
    poisoned = {"w": torch.tensor([1.0, float("nan")])}
    with WeightPublisher(LOCAL, LOCAL, check_finite=True) as pub:
        bg = BackgroundPublisher(pub)
        bg.submit(1, poisoned, then=lambda: redis_client.set("L", 1))
        with pytest.raises(PublishFailed, match="version 1 failed: .*NaN/Inf") as e:
            bg.submit(2, {"w": torch.ones(2)}, then=lambda: redis_client.set("L", 2))
        assert isinstance(e.value.__cause__, ValueError) and redis_client.get("L") is None  # L never named it
        bg.submit(2, {"w": torch.ones(2)}, then=lambda: redis_client.set("L", 2))  # reported once; goes on
        bg.close()
        assert int(redis_client.get("L")) == 2 and pub.version == 2
        bg = BackgroundPublisher(pub)
        bg.submit(3, poisoned)
        with pytest.raises(PublishFailed):
            bg.close()  # the run's end (flush) raises it too


def test_waiting_for_d_inside_the_step_computes_what_waiting_before_it_does(redis_client) -> None:
    """The overlapped learner waits for D after its forward passes; same D version, same θ, θ_old and metrics."""
    cfg = load_config(["algo.name=afd"])
    text = make_text_encoder(cfg.text, cfg.student)
    torch.manual_seed(1)
    d_weights = make_discriminator(cfg.discriminator, text.dim).state_dict()
    with WeightPublisher(LOCAL, LOCAL) as d_pub, WeightPublisher(LOCAL, LOCAL) as pub_a, \
            WeightPublisher(LOCAL, LOCAL) as pub_b, \
            WeightSubscriber(d_pub.notify_endpoint, d_pub.fetch_endpoint, query_interval_s=0.05) as d_a, \
            WeightSubscriber(d_pub.notify_endpoint, d_pub.fetch_endpoint, query_interval_s=0.05) as d_b:
        eager = _learner(cfg, text, pub_a, redis_client, d_sub=d_a)
        overlapped = _learner(cfg, text, pub_b, redis_client, d_sub=d_b, d_overlap=True)
        stop = threading.Event()
        stop.set()  # the run stops while the overlapped step waits for D (v1 is not published): nothing changes
        before = copy.deepcopy(overlapped.updater.student.state_dict())
        assert overlapped.process(_batch(cfg, 0), stop) is None
        assert overlapped.updater.steps == 0 and overlapped.updater.version == 0
        assert all(torch.equal(before[k], v) for k, v in overlapped.updater.student.state_dict().items())
        d_pub.publish(1, d_weights)  # step 0 needs D >= W + (0 + 1)·1 − 0 = 1
        m_a = eager.process(_batch(cfg, 0), threading.Event())
        m_b = overlapped.process(_batch(cfg, 0), threading.Event())
        eager.flush()
        overlapped.flush()
    assert m_a == m_b and m_b["d_version_used"] == 1.0
    for a, b in ((eager.updater.student, overlapped.updater.student), (eager.updater.old, overlapped.updater.old)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
