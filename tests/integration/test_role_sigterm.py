"""SIGTERM mid-run (real processes, real Redis, ZeroMQ): a role finishes or hands back its work and exits 0.

With `train.checkpoint_every` larger than the run, a learner acks nothing until
it stops, so the check is sharp: after SIGTERM the learner wrote a final
checkpoint, and the Redis entries its consumer group acknowledged are exactly
the pairs of the groups that checkpoint lists as trained (the rest stay pending
and come back). The student actor, stopped mid-run, holds no group lease. Restarted, the roles finish the run: every group trained once,
the losses those of `afd sync` at staleness 0.
"""

from __future__ import annotations

import math

import pytest

from afd_async.testing.cluster import LocalCluster
from afd_async.train.report import read_metrics

pytestmark = pytest.mark.slow

STEPS, WARMUP = 6, 2
RUN = ["experiment=smoke", "replay.staleness=0", "train.eval_prompts=2", f"train.steps={STEPS}",
       f"algo.d_warmup_steps={WARMUP}", "train.checkpoint_every=100"]


def acked_groups(c: LocalCluster, group: str, groups: dict[str, int]) -> tuple[set[int], set[int]]:
    """(groups with an entry acked, groups with an entry pending) of a consumer group, over stream ids `groups`."""
    pending = c.pending(group)
    return {groups[s] for s in c.acked(group, groups)}, {groups[s] for s in pending if s in groups}


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sigterm")
    res: dict = {"out": out}
    with LocalCluster(out, RUN) as c:
        sup = c.supervisor
        c.wait_for(lambda: c.status_int("student_steps") >= 2, what="2 student steps")
        res["student-learner code"] = sup.stop(sup.role("student-learner"), timeout_s=60)  # mid-run, none acked yet
        res["student-actor code"] = sup.stop(sup.role("student-actor"), timeout_s=60)
        res["leases after actor stop"] = c.r.zcard(c.keys.next_group + ":running")
        # every pair there will be until the restart; read while the D learner has acked none (nothing trimmed)
        groups = c.stream_groups()
        res["student acked/pending"] = acked_groups(c, "student", groups)
        res["d-learner code"] = sup.stop(sup.role("d-learner"), timeout_s=60)
        res["discriminator acked/pending"] = acked_groups(c, "discriminator", groups)
        for role in ("student-learner", "d-learner"):
            res[f"{role} ledger"] = c.ledger(role)
        for role in ("d-learner", "student-learner", "student-actor"):  # the run can continue
            c.start(role)
        c.wait_for(lambda: c.status().get("done") == "1", what="the restarted run to finish")
        res["sync"] = c.sync_reference(STEPS)
        c.r.set(c.keys.stop, 1)
        res["codes"] = [(r.name, sup.stop(r, timeout_s=60)) for r in reversed(sup.roles)]  # restarted ones too
        res["final ledgers"] = {r: c.ledger(r) for r in ("student-learner", "d-learner")}
        res["pending at end"] = {g: c.pending(g) for g in ("student", "discriminator")}
    return res


def test_sigterm_exits_0(stopped_run):
    for role in ("student-learner", "d-learner", "student-actor"):
        assert stopped_run[f"{role} code"] == 0, role
    assert {code for _, code in stopped_run["codes"]} == {0}, stopped_run["codes"]  # every role, at the end too


def test_a_stopped_learner_acked_exactly_what_its_final_checkpoint_holds(stopped_run):
    s_ledger, d_ledger = stopped_run["student-learner ledger"], stopped_run["d-learner ledger"]
    assert len(s_ledger["trained"]) >= 2 and len(d_ledger["trained"]) >= WARMUP + 2
    s_acked, s_pending = stopped_run["student acked/pending"]
    d_acked, d_pending = stopped_run["discriminator acked/pending"]
    # the student feed acks warm-up groups itself (they train D only); every other ack is a trained group
    assert s_acked - set(range(WARMUP)) == set(s_ledger["trained"])
    assert not s_pending & set(s_ledger["trained"])  # and every trained group was acked
    assert d_acked == set(d_ledger["trained"]) and not d_pending & d_acked


def test_a_stopped_student_actor_holds_no_lease(stopped_run):
    assert stopped_run["leases after actor stop"] == 0


def test_the_restarted_roles_finish_the_run_exactly(stopped_run):
    ledgers = stopped_run["final ledgers"]
    assert ledgers["student-learner"]["trained"] == list(range(WARMUP, WARMUP + STEPS))
    assert ledgers["d-learner"]["trained"] == list(range(WARMUP + STEPS))
    assert stopped_run["pending at end"] == {"student": {}, "discriminator": {}}
    last = {r["step"]: r for r in read_metrics(stopped_run["out"] / "metrics.jsonl") if r.get("phase") == "train"}
    assert sorted(last) == list(range(1, STEPS + 1))
    for step, s in enumerate(stopped_run["sync"], start=1):
        for key in ("student_loss", "nft_loss", "score_mean"):
            assert math.isclose(last[step][key], s[key], rel_tol=1e-4, abs_tol=1e-5), (step, key)
