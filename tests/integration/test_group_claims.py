"""Staleness admission and group leases on a real Redis (runtime/groups.py)."""

from __future__ import annotations

import threading

import redis

from afd_async.runtime.groups import EXHAUSTED, NOT_ADMITTED, GroupClaims
from afd_async.store.keys import RunKeys


def _claims(redis_client, *, k: int, lease_s: float = 60.0) -> GroupClaims:
    return GroupClaims(redis_client, RunKeys("t"), total_groups=8, warmup_groups=2, staleness=k, lease_s=lease_s)


def test_admission_bounds_groups_ahead_of_the_learner(redis_client):
    claims = _claims(redis_client, k=1)
    got = [claims.try_claim()[0].group for _ in range(4)]
    assert got == [0, 1, 2, 3]  # 2 warm-up groups, then train steps 0 and 1 (<= L + k with L = 0)
    claim, code = claims.try_claim()
    assert claim is None and code == NOT_ADMITTED  # step 2 > 0 + 1: refused, not handed out
    redis_client.set(RunKeys("t").student_version, 1)
    assert claims.try_claim()[0].group == 4


def test_staleness_zero_is_lockstep(redis_client):
    claims = _claims(redis_client, k=0)
    assert [claims.try_claim()[0].group for _ in range(3)] == [0, 1, 2]
    assert claims.try_claim() == (None, NOT_ADMITTED)


def test_expired_lease_is_rerolled_before_new_groups(redis_client):
    claims = _claims(redis_client, k=5)
    first = claims.try_claim()[0]
    live = claims.try_claim()[0]
    # the first actor died: its lease deadline is in the past (the second's is not)
    redis_client.zadd(claims.running_key, {str(first.group): 0})
    again = claims.try_claim()[0]
    assert again.group == first.group and again.reroll
    assert claims.try_claim()[0].group == live.group + 1  # the live lease was not touched


def test_done_groups_are_not_rerolled_and_plan_ends(redis_client):
    claims = _claims(redis_client, k=10)
    for _ in range(8):
        c, _ = claims.try_claim()
        claims.done(c.group)
    assert claims.try_claim() == (None, EXHAUSTED)
    claims.reroll(5)  # a stale group comes back
    c, _ = claims.try_claim()
    assert c.group == 5 and c.reroll


def test_admission_bound_holds_under_concurrent_actors(redis_server, redis_client):
    """Many actors claim at once while the learner advances: no group is ever handed out beyond L + k,
    and none twice (moved here from the deleted `replay.staleness.StalenessAdmission` test)."""
    k, warmup, total, n_actors = 1, 2, 40, 4
    keys = RunKeys("t")
    kw = redis_server.client_kwargs()
    claimed: list[tuple[int, int]] = []  # (group, learner version read after the claim)
    lock = threading.Lock()
    stop = threading.Event()

    def actor() -> None:
        r = redis.Redis(**kw, socket_timeout=5)
        claims = GroupClaims(r, keys, total_groups=total, warmup_groups=warmup, staleness=k, lease_s=60.0)
        while not stop.is_set():
            claim, code = claims.try_claim()
            if claim is None:
                if code == EXHAUSTED:
                    break
                stop.wait(0.001)  # not admitted: wait for the learner
                continue
            version = int(r.get(keys.student_version) or 0)  # versions only grow: an upper bound of L at the claim
            claims.done(claim.group)
            with lock:
                claimed.append((claim.group, version))
        r.close()

    def learner() -> None:
        r = redis.Redis(**kw, socket_timeout=5)
        for _ in range(total - warmup):
            stop.wait(0.005)
            r.incr(keys.student_version)
        r.close()

    threads = [threading.Thread(target=actor) for _ in range(n_actors)] + [threading.Thread(target=learner)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stop.set()
    assert not any(t.is_alive() for t in threads)
    groups = [g for g, _ in claimed]
    assert sorted(groups) == list(range(total))  # every group once, none twice
    assert all(g < warmup or g - warmup <= version + k for g, version in claimed)
