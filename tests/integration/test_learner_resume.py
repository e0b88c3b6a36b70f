"""Learner crash and exact resume, with every role a real process (real Redis, ZeroMQ, HTTP teacher).

One run at staleness 0: the student learner is killed with SIGKILL between two
checkpoints (it holds trained, un-acked batches), the supervisor restarts it, it
resumes from its checkpoint; later the D learner is killed the same way. The
run finishes, and:

* no group is lost or trained twice: each learner's durable ledger lists every
  planned group exactly once, in plan order, and every pair-stream entry is
  acked in both consumer groups;
* the feeder handed the dead learner's batches to the restarted one with the
  same Redis ids (`GroupFeed.on_lost`): the ids pending at the kill (delivered
  once) are the ids the resumed incarnation trained and acked;
* the strong check: the student losses equal the uninterrupted `afd sync` loss
  on the same seeds, step for step, within the oracle test's tolerance, and a
  redone step computes what its first attempt computed, bit for bit.

The sync reference takes the teacher clips the run used from its Redis cache
(`LocalCluster.sync_reference`): libx264 does not encode bit-reproducibly, so a sync loop
that re-encodes its own clips (`train.sync_teacher_codec`) trains on slightly
other clips.
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest

from afd_async.launch.supervisor import RestartPolicy
from afd_async.testing.cluster import LocalCluster
from afd_async.train.report import read_metrics

pytestmark = pytest.mark.slow

STEPS, WARMUP, EVERY = 10, 2, 3
RUN = ["experiment=smoke", "replay.staleness=0", "train.eval_prompts=2",
       f"train.steps={STEPS}", f"algo.d_warmup_steps={WARMUP}", f"train.checkpoint_every={EVERY}"]
LOSS_KEYS = ("student_loss", "nft_loss", "score_mean", "w_min", "w_max")


def kill_between_checkpoints(c: LocalCluster, role: str, steps: callable, lo: int, hi: int) -> int:
    """SIGKILL `role` once `steps()` is in [lo, hi] and not a multiple of the checkpoint period."""
    c.wait_for(lambda: lo <= steps() <= hi and steps() % EVERY != 0, what=f"{role} between checkpoints",
               interval_s=0.02)
    c.supervisor.kill(role, signal.SIGKILL)
    proc = c.supervisor.role(role).proc
    assert proc.wait(30) == -signal.SIGKILL
    return steps()


def logged_train_steps(out: Path) -> int:
    """The newest student step in the run's metrics.jsonl (0 before any; a line being written is skipped)."""
    path, newest = out / "metrics.jsonl", 0
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("phase") == "train":
                newest = max(newest, int(rec["step"]))
    return newest


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume")
    with LocalCluster(out, RUN, restart=RestartPolicy(max_restarts=2, backoff_s=0.1)) as c:
        # 1. the student learner dies holding trained, un-acked batches
        # (its steps as logged: the status's student_steps is set once the step's θ_old is served, on a thread,
        # and may run ahead of the step's line in metrics.jsonl, which the redo check below reads)
        s_killed = kill_between_checkpoints(c, "student-learner", lambda: logged_train_steps(out), 4, 5)
        groups = c.stream_groups()
        s_pending = c.pending("student")
        # 2. after its restart has caught up, the D learner dies the same way (D version = groups trained, ratio 1)
        c.wait_for(lambda: c.status_int("student_steps") > s_killed, what="the resumed student learner to step")
        d_killed = kill_between_checkpoints(c, "d-learner", lambda: c.status_int("d_version"), WARMUP + s_killed + 1,
                                            WARMUP + STEPS - 1)
        groups = c.stream_groups()
        d_pending = c.pending("discriminator")
        c.wait_for(lambda: c.status().get("done") == "1", what="the run to finish")
        sync = c.sync_reference(STEPS)
        result = dict(out=out, sync=sync, groups=groups, s_killed=s_killed, s_pending=s_pending, d_killed=d_killed,
                      d_pending=d_pending, s_ledger=c.ledger("student-learner"), pending_end={
                          g: c.pending(g) for g in ("student", "discriminator")},
                      restarts=c.supervisor.restart_counts(), codes=None)
        c.r.set(c.keys.stop, 1)
        result["codes"] = c.supervisor.stop_all(timeout_s=30)
        result["d_ledger"] = c.ledger("d-learner")
        result["s_ledger"] = c.ledger("student-learner")
    return result


def test_both_learners_were_restarted_and_every_role_exits_0(crashed_run):
    assert crashed_run["restarts"]["student-learner"] == 1 and crashed_run["restarts"]["d-learner"] == 1
    assert set(crashed_run["codes"].values()) == {0}, crashed_run["codes"]


def test_no_group_lost_or_trained_twice(crashed_run):
    s, d = crashed_run["s_ledger"], crashed_run["d_ledger"]
    assert s["trained"] == list(range(WARMUP, WARMUP + STEPS))  # each once, in plan order
    assert d["trained"] == list(range(WARMUP + STEPS))
    assert s["incarnation"] == 1 and d["incarnation"] == 1  # each resumed once from a checkpoint
    assert crashed_run["pending_end"] == {"student": {}, "discriminator": {}}  # every pair acked by both


def test_the_dead_learners_batches_came_back_with_the_same_redis_ids(crashed_run):
    groups = crashed_run["groups"]
    for ledger, killed_pending, trained_before_kill in (
            (crashed_run["s_ledger"], crashed_run["s_pending"], WARMUP + crashed_run["s_killed"]),
            (crashed_run["d_ledger"], crashed_run["d_pending"], crashed_run["d_killed"])):
        by_group = {e["group"]: e for e in ledger["recent"]}
        held = {sid for sid in killed_pending if groups.get(sid) in by_group}
        # it had trained some of them after its last checkpoint: not acked, so not lost
        assert any(groups[sid] < trained_before_kill for sid in held), (sorted(held), trained_before_kill)
        resumed_at = min((e["step"] for e in ledger["recent"] if e["incarnation"] == 1), default=None)
        for sid in held:
            assert killed_pending[sid] == 1  # handed back in memory by the feeder, never re-read from Redis
            entry = by_group[groups[sid]]
            if entry["incarnation"] == 0:
                # trained and in the checkpoint it resumed from: the file was on disk (written on the background
                # thread) but the ack waits for the next step, which never came. Acked at resume, not trained again
                assert resumed_at is not None and entry["step"] < resumed_at, (sid, entry, resumed_at)
            else:
                assert entry["incarnation"] == 1 and sid in entry["stream_ids"], (sid, entry)  # same ids, trained again
        # the batches trained after the last checkpoint came back and were trained again, with their ids
        assert any(by_group[groups[sid]]["incarnation"] == 1 for sid in held), (sorted(held), by_group)


def test_resumed_run_reproduces_the_sync_loop(crashed_run):
    out = crashed_run["out"]
    last, logged = {}, {}
    for rec in read_metrics(out / "metrics.jsonl"):  # a redone step is logged twice: the last one counts
        if rec.get("phase") == "train":
            last[rec["step"]] = rec
            logged.setdefault(rec["step"], []).append(rec)
    assert sorted(last) == list(range(1, STEPS + 1))
    redone = {step: recs for step, recs in logged.items() if len(recs) > 1}
    assert redone, "the student learner redid no step after its restart"
    for step, recs in redone.items():  # the redo computed what the first attempt computed, bit for bit
        assert all(r[k] == recs[0][k] for r in recs for k in LOSS_KEYS), (step, recs)
    for step, s in enumerate(crashed_run["sync"], start=1):
        a = last[step]
        for key in LOSS_KEYS:
            assert math.isclose(a[key], s[key], rel_tol=1e-4, abs_tol=1e-5), (step, key, a[key], s[key])
