"""θ_old published off the critical path: exactly the step's θ_old and version, L set after serving, errors surface."""

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


def test_each_step_publishes_exactly_its_theta_old_while_the_next_step_runs(redis_client) -> None:
    cfg = load_config(["algo.name=afd"])
    torch.manual_seed(0)
    text = make_text_encoder(cfg.text, cfg.student)
    upd = make_student_updater(cfg, make_student(cfg.student, text.dim))
    keys = RunKeys()
    with WeightPublisher(LOCAL, LOCAL, chunk_size=4096) as pub, \
            WeightSubscriber(pub.notify_endpoint, pub.fetch_endpoint) as sub:
        learner = StudentLearner(updater=upd, d=d_copy(make_discriminator(cfg.discriminator, text.dim)),
                                 d_subscriber=None, publisher=pub, client=redis_client, keys=keys,
                                 encode_text=text.encode, run_seed=0, warmup_groups=0, d_steps_per_batch=1,
                                 d_staleness=0, needs_d=True, pixel_latent=True,
                                 rewards=get_objective("afd").make_rewards(cfg))
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
