"""The student actor as a role: roll out groups until the plan is handed out, then stay for re-rolls.

    until the run's stop key or SIGTERM:
        StudentActor.run  (claim → request teacher clips → newest θ_old → roll out → write pairs)
        each written group: rollout, frame and policy-version metrics; `pairs_written`, the actor's busy
        fraction, group seconds and GPU peak in the status hash; each weight sync: its seconds there too
"""

from __future__ import annotations

from typing import Callable

import torch

from afd_async import metrics as M
from afd_async.runtime.busy import BusyMeter
from afd_async.runtime.context import RoleContext
from afd_async.runtime.gpu_share import record_gpu_peak
from afd_async.runtime.student_actor import StudentActor
from afd_async.train.plan import Group

GroupMetrics = Callable[[Group, int, float, int], None]  # (group, rows, rollout seconds, policy version)


def group_metrics(rc: RoleContext, device: torch.device) -> GroupMetrics:
    """What a written group adds to the role's metrics and the run's status (StudentActor's `metrics`).

    `actor_busy_ratio`: rollout + decode + write seconds ÷ wall time since the first group was written
    (start-up and the first group are not steady state), as the learners' busy fractions are counted.
    """
    frames = rc.cfg.student.num_frames
    busy = BusyMeter(warm_batches=1)

    def on_group(group: Group, n: int, seconds: float, version: int) -> None:
        rc.metrics(M.STUDENT_ACTOR_ROLLOUTS).inc(n)
        rc.metrics(M.STUDENT_ACTOR_FRAMES).inc(n * frames)
        rc.metrics(M.STUDENT_ACTOR_ROLLOUT_SECONDS).observe(seconds)
        rc.metrics(M.STUDENT_ACTOR_POLICY_VERSION).set(version)
        rc.metrics(M.REPLAY_WRITTEN).inc(n)
        rc.redis.hincrby(rc.keys.status, "pairs_written", n)
        busy.add(step=seconds)
        rc.set_status(actor_busy_ratio=round(busy.ratio, 4))
        rc.redis.hincrbyfloat(rc.keys.status, "actor_group_s", seconds)  # ÷ actor_groups: a group's mean time
        rc.redis.hincrby(rc.keys.status, "actor_groups", 1)
        record_gpu_peak(rc, device)
        rc.metrics.beat()

    return on_group


def weight_sync_status(rc: RoleContext) -> Callable[[float], None]:
    """StudentActor's `on_weights`: sums the seconds of θ_old syncs and counts them in the status hash, so a
    run's report gives the mean sync time at the student's size (`actor_weight_sync_s` ÷ `actor_weight_syncs`)."""

    def synced(seconds: float) -> None:
        rc.redis.hincrbyfloat(rc.keys.status, "actor_weight_sync_s", seconds)
        rc.redis.hincrby(rc.keys.status, "actor_weight_syncs", 1)

    return synced


def act(rc: RoleContext, actor: StudentActor) -> int:
    """Run the actor until the run stops; returns the exit code."""
    rc.watch_stop_key()
    rc.announce_ready()
    written = actor.run(rc.stop)
    # The plan is handed out, but a lease may still lapse (an actor died) or the feeder may re-roll a stale
    # group: stay until the run's stop key, or a re-rolled group would wait for an actor forever.
    while not rc.stop.wait(0.2):
        written += actor.run(rc.stop)
    rc.log.info("student actor: %d groups written", written)
    return 0
