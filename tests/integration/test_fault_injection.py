"""Fault injection (issue #8): SIGKILL each role of a real `afd run` mid-run — and the redis-server —
then count: no pair lost, none trained twice, no teacher job created twice or orphaned.

Every run is the real thing: a private redis-server with AOF, the local teacher
server over HTTP, every role a process, ZeroMQ between them. "Mid-run" moments
are conditions on the run's state (Redis counters, consumer-group pending
entries, the teacher server's in-flight jobs), checked on each launcher tick.
"""

from __future__ import annotations

import sys

import pytest

from afd_async.config import load_config
from afd_async.faults.inject import (REDIS, KillWhen, all_of, group_claimed, pairs_pending, status_at_least,
                                     teacher_jobs_in_flight)
from afd_async.faults.ledger import FaultLedgerHook, learner_counts, teacher_job_counts
from afd_async.launch.run import launch
from afd_async.launch.supervisor import RestartPolicy, RoleFailed, Supervisor, wait_until

STEPS = 8
# Smoke-size run, with the timeouts that decide how fast a dead role's work passes on cut to seconds.
FAST = [
    "experiment=smoke", "text.kind=hash", f"train.steps={STEPS}", "train.eval_prompts=2", "train.checkpoint_every=2",
    "replay.group_lease_s=4",  # a dead student actor's group is re-rolled after this
    "teacher.source.pop_timeout_s=0.5", "teacher.source.actor_ttl_s=2",  # a dead teacher actor's prompts re-queued
    "teacher.gateway.claim_ttl_s=2",  # its journal claims pass on
    "teacher.quota.lease_ttl_s=4",  # its in-flight quota slots come back
    "teacher.server.render_latency_s=0.5",  # jobs stay in flight long enough to be killed under
    "cluster.restart_backoff_s=0.2",
]

WHEN = {
    # teacher actor polling jobs at the server
    "teacher-actor": teacher_jobs_in_flight(1),
    # a group claimed (rolling out or waiting for its clips), after some were written
    "student-actor": all_of(status_at_least("pairs_written", 4), group_claimed),
    # batches delivered by the feeder and not yet acked by a learner
    "feeder": all_of(status_at_least("student_steps", 1), pairs_pending("student")),
    REDIS: status_at_least("student_steps", 2),
    # learners with unacked (so un-checkpointed or in-step) batches
    "d-learner": all_of(status_at_least("d_version", 3), pairs_pending("discriminator")),
    "student-learner": all_of(status_at_least("student_steps", 2), pairs_pending("student")),
}


@pytest.mark.slow
@pytest.mark.parametrize("target", list(WHEN))
def test_kill_mid_run_loses_nothing(tmp_path, target: str) -> None:
    overrides = [*FAST, f"train.output_dir={tmp_path / 'run'}"]
    kill, ledger = KillWhen(target, WHEN[target]), FaultLedgerHook()
    summary = launch(load_config(overrides), overrides, show_progress=False, timeout_s=240, hooks=[kill, ledger])

    assert len(kill.kills) == 1, f"{target} was never killed mid-run"
    assert summary["restarts"][target] >= 1, summary["restarts"]
    assert summary["steps"] == STEPS
    c = ledger.counts
    assert c is not None
    assert c.lost == 0 and c.twice == 0, c.as_dict()
    assert c.teacher_jobs_twice == 0 and c.teacher_jobs_orphaned == 0, c.as_dict()
    # every planned pair trained exactly once by each learner (2 warm-up groups, STEPS groups, 2 rows each)
    assert c.pairs_trained == {"discriminator": (2 + STEPS) * 2, "student": STEPS * 2}, c.as_dict()
    assert c.pairs_produced >= (2 + STEPS) * 2
    assert c.teacher_jobs >= 1 and c.clean()


def test_crash_loop_fails_with_the_log_tail(tmp_path) -> None:
    """A role that keeps crashing is restarted `max_restarts` times, then fails the run, naming why."""
    sup = Supervisor(tmp_path / "logs", restart=RestartPolicy(max_restarts=2, window_s=60, backoff_s=0.05,
                                                              backoff_max_s=0.1))
    with sup:
        role = sup.start("bad", "no-such-role")  # the CLI rejects it: exit code 2, every time
        with pytest.raises(RoleFailed) as err:
            wait_until(lambda: False, timeout_s=60, interval_s=0.05, what="the crash loop", supervisor=sup)
    assert role.restarts == 2 and role.exits == [2, 2, 2]
    assert "role bad exited with code 2" in str(err.value) and "invalid choice" in str(err.value)
    assert (tmp_path / "logs" / "bad.log").read_text().count("=== supervisor: restart #") == 2


def test_a_finished_role_is_not_restarted(tmp_path) -> None:
    sup = Supervisor(tmp_path / "logs", restart=RestartPolicy(max_restarts=3, backoff_s=0.0))
    with sup:
        role = sup.start("cfg", "config", ["text.kind=hash"])  # prints the config, exits 0
        wait_until(lambda: not role.running, timeout_s=60, what="the role to exit")
        sup.check()
    assert role.proc is not None and role.proc.returncode == 0 and role.restarts == 0


def test_ledger_counts_what_went_wrong() -> None:
    """The counting itself: a missing group is lost, a repeated one twice; a second live job or an unfetched one counts."""
    rows = {g: 2 for g in range(6)}
    assert learner_counts([2, 3, 4, 5], [2, 3, 4, 5], rows)[:3] == (8, 0, 0)
    trained, lost, twice, detail = learner_counts([2, 3, 3, 5], [2, 3, 4, 5], rows)
    assert (trained, lost, twice) == (8, 2, 2) and detail == {"lost_groups": [4], "twice_groups": [3]}
    jobs = [
        {"id": "a", "prompt": "p", "seed": 0, "model": "m", "status": "completed", "downloads": 1},
        {"id": "b", "prompt": "p", "seed": 0, "model": "m", "status": "failed", "downloads": 0},  # a retried failure
        {"id": "c", "prompt": "q", "seed": 0, "model": "m", "status": "completed", "downloads": 1},
        {"id": "d", "prompt": "q", "seed": 0, "model": "m", "status": "completed", "downloads": 0},  # twice + orphan
        {"id": "e", "prompt": "q", "seed": 1, "model": "m", "status": "completed", "downloads": 2},
    ]
    twice, orphaned, failed, _ = teacher_job_counts(jobs)
    assert (twice, orphaned, failed) == (1, 1, 1)


def test_an_ack_from_a_dead_feeder_session_cannot_ack_the_new_sessions_batch() -> None:
    """Feeder restart: the learner acks (late, after its checkpoint) a batch of the old session. The restarted
    feeder must not take that ack for one of its own batches, or it would XACK a group nobody trained."""
    import itertools

    import torch

    from afd_async.transport import Batch, FeedClient, FeedServer

    acked: list[str] = []

    def source(name: str):
        n = itertools.count()
        return lambda rank: Batch({"x": torch.zeros(2)}, {"session": name}, f"{name}{next(n)}")

    first = FeedServer("tcp://127.0.0.1:0", source("old"), on_ack=lambda rank, tok: acked.append(tok)).start()
    endpoint = first.endpoint
    with FeedClient(endpoint, rank=0, window=1, heartbeat_s=0.1) as client:
        old = client.next(timeout_s=10)
        first.close()  # the feeder dies with the batch unacked
        with FeedServer(endpoint, source("new"), on_ack=lambda rank, tok: acked.append(tok)):
            first_new = client.next(timeout_s=20)
            while first_new.meta["session"] != "new":  # a batch prefetched from the old session
                first_new = client.next(timeout_s=20)
            client.ack(old)  # late ack of the old session's batch; first_new stays unacked
            second_new = client.next(timeout_s=20)
            client.ack(second_new)  # sent after the old ack on the same socket: once it lands, so did that one
            wait_until(lambda: len(acked) >= 1, timeout_s=10, what="the second batch's ack")
    assert acked == ["new1"], acked  # the old ack matched nothing in the new session


def test_a_rerolled_row_replaces_the_dead_actors_row_and_acks_it(redis_client) -> None:
    """A student actor died after writing row 0 of a group; the re-roll writes the whole group again with newer
    weights. The feeder trains the re-roll's rows and acks the dead actor's row (else it stays pending forever
    and pins the stream: `trim_acked` can never cut below it)."""
    import dataclasses

    import torch

    from afd_async.replay import PairWriter
    from afd_async.replay.examples import make_pair
    from afd_async.runtime.feeder import GroupFeed
    from afd_async.runtime.groups import GroupClaims
    from afd_async.store.keys import RunKeys

    keys = RunKeys("t")
    claims = GroupClaims(redis_client, keys, total_groups=4, warmup_groups=0, staleness=5, lease_s=5)
    feed = GroupFeed(redis_client, keys, learner="student", claims=claims, teacher=lambda ref: torch.zeros(2, 8, 8, 3,
                     dtype=torch.uint8), staleness=5, warmup_groups=0)

    def row(i: int, version: int):
        return dataclasses.replace(make_pair(i, policy_version=version, pair_id=f"g1-r{i}-v{version}"),
                                   group=1, group_row=i, group_size=2)

    with PairWriter(redis_client, stream=keys.pairs) as w:
        w.write(row(0, 3))  # the dead actor's only row
        for i in range(2):
            w.write(row(i, 4))  # the re-roll
    batch = None
    for _ in range(10):
        batch = batch or feed.next_batch(0)
    assert batch is not None and batch.meta["pair_ids"] == ["g1-r0-v4", "g1-r1-v4"]
    feed.on_ack(0, batch.token)
    assert redis_client.xpending(keys.pairs, "student")["pending"] == 0


def test_a_restarted_feeder_recovers_every_pending_pair_not_just_a_page(redis_client) -> None:
    """A feeder died holding more unacked pairs than one pending read returns (256): its successor (same
    consumer name) must page through all of them, or the groups past the first page never complete (lost)."""
    import dataclasses

    import torch

    from afd_async.replay import PairReader, PairWriter
    from afd_async.replay.examples import make_pair
    from afd_async.runtime.feeder import GroupFeed
    from afd_async.runtime.groups import GroupClaims
    from afd_async.store.keys import RunKeys

    keys, groups = RunKeys("t"), 150  # 300 pairs
    with PairWriter(redis_client, stream=keys.pairs) as w:
        for g in range(groups):
            for i in range(2):
                w.write(dataclasses.replace(make_pair(2 * g + i, payload_bytes=256, pair_id=f"g{g}-r{i}-v0"),
                                            group=g, group_row=i, group_size=2))
    dead = PairReader(redis_client, stream=keys.pairs, group="student", consumer="feeder")
    assert len(dead.read(1000)) == 2 * groups  # delivered to the feeder that then died, none acked

    claims = GroupClaims(redis_client, keys, total_groups=groups, warmup_groups=0, staleness=0, lease_s=5)
    feed = GroupFeed(redis_client, keys, learner="student", claims=claims, staleness=0, warmup_groups=0,
                     teacher=lambda ref: torch.zeros(2, 8, 8, 3, dtype=torch.uint8), read_block_ms=1)
    got = []
    for _ in range(4 * groups):
        batch = feed.next_batch(0)
        if batch is not None:
            got.append(batch.meta["group"])
            feed.on_ack(0, batch.token)
        if len(got) == groups:
            break
    assert sorted(got) == list(range(groups))
    assert redis_client.xpending(keys.pairs, "student")["pending"] == 0


def test_a_restarted_feeder_does_not_drop_a_recovered_group_as_stale(redis_client) -> None:
    """Groups delivered before a feeder restart were admitted then and may be trained already (their acks wait
    for the learner's checkpoint). By the time the successor reads them the learner is further ahead; dropping
    them as stale would ack entries a learner that crashes before its checkpoint still needs."""
    import dataclasses

    import torch

    from afd_async.replay import PairReader, PairWriter
    from afd_async.replay.examples import make_pair
    from afd_async.runtime.feeder import GroupFeed
    from afd_async.runtime.groups import GroupClaims
    from afd_async.store.keys import RunKeys

    keys = RunKeys("t")
    with PairWriter(redis_client, stream=keys.pairs) as w:
        for g in (3, 4):  # rolled out with policy version 2 and 3
            for i in range(2):
                w.write(dataclasses.replace(make_pair(2 * g + i, payload_bytes=256, policy_version=g - 1,
                                                      pair_id=f"g{g}-r{i}"), group=g, group_row=i, group_size=2))
    PairReader(redis_client, stream=keys.pairs, group="student", consumer="feeder").read(2)  # group 3 delivered
    redis_client.set(keys.student_version, 6)  # the learner moved on (k = 1): both groups are now "stale"
    claims = GroupClaims(redis_client, keys, total_groups=8, warmup_groups=0, staleness=1, lease_s=5)
    feed = GroupFeed(redis_client, keys, learner="student", claims=claims, staleness=1, warmup_groups=0,
                     teacher=lambda ref: torch.zeros(2, 8, 8, 3, dtype=torch.uint8), read_block_ms=1)
    batches = [b for b in (feed.next_batch(0) for _ in range(6)) if b is not None]
    assert [b.meta["group"] for b in batches] == [3]  # the recovered group is fed
    assert feed.groups_dropped == 1 and redis_client.lrange(keys.reroll, 0, -1) == [b"4"]  # the new one is not


def test_a_stale_drop_by_either_feed_rerolls_the_group_once(redis_client) -> None:
    """The D feed may drop a group the student feed fed (they read the learner version at different moments):
    it must ask for the re-roll too, or the discriminator never gets that group (and the student learner, which
    waits for D, stalls). Both feeds dropping it queues one re-roll."""
    import dataclasses

    import torch

    from afd_async.replay import PairWriter
    from afd_async.replay.examples import make_pair
    from afd_async.runtime.feeder import GroupFeed
    from afd_async.runtime.groups import GroupClaims
    from afd_async.store.keys import RunKeys

    keys = RunKeys("t")
    with PairWriter(redis_client, stream=keys.pairs) as w:
        for i in range(2):
            w.write(dataclasses.replace(make_pair(i, payload_bytes=256, policy_version=1, pair_id=f"g5-r{i}"),
                                        group=5, group_row=i, group_size=2))
    redis_client.set(keys.student_version, 4)  # k = 1: policy 1 is stale
    claims = GroupClaims(redis_client, keys, total_groups=8, warmup_groups=0, staleness=1, lease_s=5)
    feeds = [GroupFeed(redis_client, keys, learner=name, claims=claims, staleness=1, warmup_groups=0,
                       teacher=lambda ref: torch.zeros(2, 8, 8, 3, dtype=torch.uint8), read_block_ms=1)
             for name in ("discriminator", "student")]
    assert [feeds[0].next_batch(0) for _ in range(3)] == [None] * 3 and feeds[0].groups_dropped == 1
    assert redis_client.lrange(keys.reroll, 0, -1) == [b"5"]  # the D feed's drop alone re-rolls
    assert [feeds[1].next_batch(0) for _ in range(3)] == [None] * 3 and feeds[1].groups_dropped == 1
    assert redis_client.lrange(keys.reroll, 0, -1) == [b"5"]  # once


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
