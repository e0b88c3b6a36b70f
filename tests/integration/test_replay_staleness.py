"""Staleness: admission bound under concurrent actors, filter drops and counts, re-rolls keep the teacher clip."""

from __future__ import annotations

import threading

import pytest
import redis

from afd_async.replay import PairReader, PairWriter, RerollQueue, StalenessAdmission, StalenessFilter, staleness_histogram
from afd_async.replay.examples import make_pair

S, VERSION = "t:pairs", "t:learner_version"


def test_admission_bound_holds_under_concurrent_actors(redis_server, redis_client) -> None:
    k, batch, versions, n_actors = 1, 4, 8, 4
    kw = redis_server.client_kwargs()
    PairReader(redis_client, stream=S, group="student", consumer="learner")
    stop, violations, written = threading.Event(), [], []
    filt = StalenessFilter(k)

    def actor(idx: int) -> None:
        r = redis.Redis(**kw, socket_timeout=5)
        adm = StalenessAdmission(r, k=k, batch_size=batch, prefix="t:adm")
        w = PairWriter(r, stream=S)
        i = 0
        while not stop.is_set():
            version = int(r.get(VERSION) or 0)
            ticket = adm.try_admit(version, policy_version=version)
            if ticket is None:
                stop.wait(0.002)  # back off; admission is re-checked against the learner's progress
                continue
            written.append(w.write(make_pair(idx * 10_000 + i, payload_bytes=64, policy_version=version)))
            i += 1
            adm.release(ticket, accepted=True)
        r.close()

    def observer() -> None:
        r = redis.Redis(**kw, socket_timeout=5)
        while not stop.is_set():
            pipe = r.pipeline(transaction=True)
            pipe.get("t:adm:accepted").zcard("t:adm:running").get(VERSION)
            acc, run, ver = pipe.execute()
            if int(acc or 0) + run > (k + int(ver or 0) + 1) * batch:
                violations.append((acc, run, ver))
        r.close()

    def learner() -> None:
        r = redis.Redis(**kw, socket_timeout=5)
        rd = PairReader(r, stream=S, group="student", consumer="learner")
        version, buf = 0, []
        while version < versions:
            buf += rd.read(count=batch - len(buf), block_ms=500)
            if len(buf) < batch:
                continue
            filt.filter([p for _, p in buf], version)
            rd.ack([sid for sid, _ in buf])
            buf = []
            version = int(r.incr(VERSION))
        stop.set()
        r.close()

    threads = [threading.Thread(target=actor, args=(i,)) for i in range(n_actors)]
    threads += [threading.Thread(target=observer), threading.Thread(target=learner)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert violations == []
    accepted, running = StalenessAdmission(redis_client, k=k, batch_size=batch, prefix="t:adm").counts()
    assert running == 0 and accepted == len(written) <= (k + versions + 1) * batch
    assert filt.kept + filt.dropped == versions * batch == sum(filt.histogram.values())


def _server_ms(r) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def test_admission_waits_for_old_policies_and_frees_lapsed_leases(redis_client) -> None:
    adm = StalenessAdmission(redis_client, k=0, batch_size=2, prefix="t:adm")
    assert adm.try_admit(3, policy_version=2) is None  # weights 1 version behind with k = 0: the actor waits
    a, b = adm.try_admit(0), adm.try_admit(0)
    assert a is not None and b is not None and adm.try_admit(0) is None
    assert adm.release(a, accepted=True) and adm.release(b, accepted=False)
    assert adm.try_admit(0) is not None and adm.try_admit(0) is None  # b's slot came back, a's pair holds one
    assert adm.try_admit(1) is not None  # the learner moved on: one more batch allowed
    state = adm.state_dict()
    adm.retract(1)
    assert adm.counts()[0] == 0
    adm.load_state_dict(state)
    assert adm.counts() == (1, 0)

    short = StalenessAdmission(redis_client, k=0, batch_size=1, prefix="t:lease", lease_s=0.05)
    t1 = short.try_admit(0)
    assert t1 is not None and short.try_admit(0) is None
    while _server_ms(redis_client) <= t1.deadline_ms:
        pass  # wait on the server's clock for the lease to lapse (the actor died)
    t2 = short.try_admit(0)
    assert t2 is not None  # the dead actor's slot was freed
    assert short.release(t1, accepted=False) is False  # lapsed: no slot freed twice
    assert short.release(t2, accepted=True) is True and short.counts() == (1, 0)


def test_filter_drops_counts_and_rerolls_with_the_same_teacher_clip(redis_client) -> None:
    queue = RerollQueue(redis_client, key="t:reroll")
    adm = StalenessAdmission(redis_client, k=1, batch_size=4, prefix="t:adm")
    for _ in range(3):
        adm.release(adm.try_admit(0), accepted=True)  # type: ignore[arg-type]
    filt = StalenessFilter(1, on_drop=queue.push, admission=adm)
    pairs = [make_pair(i, policy_version=v) for i, v in enumerate([5, 4, 3, 2, 6])]
    kept = filt.filter(pairs, learner_version=5)
    assert [p.policy_version for p in kept] == [5, 4, 6]
    assert (filt.kept, filt.dropped) == (3, 2)
    assert dict(filt.histogram) == {0: 1, 1: 1, 2: 1, 3: 1, -1: 1} == staleness_histogram(pairs, 5)
    assert adm.counts()[0] == 1  # the two dropped pairs no longer hold admission slots
    first = queue.pop(timeout_s=1.0)
    assert first is not None and first.teacher_ref == pairs[2].teacher_ref and first.prompt == pairs[2].prompt
    assert queue.pop() is not None and queue.pop() is None and len(queue) == 0
    restored = StalenessFilter(1)
    restored.load_state_dict(filt.state_dict())
    assert restored.state_dict() == filt.state_dict()
    with pytest.raises(ValueError, match="k must be"):
        StalenessFilter(-1)
