"""The student actor as a role: roll out groups until the plan is handed out, then stay for re-rolls.

    until the run's stop key or SIGTERM:
        StudentActor.run  (claim → request teacher clips → newest θ_old → roll out → write pairs)
        each written group: rollout, frame and policy-version metrics, `pairs_written` in the status hash
"""

from __future__ import annotations

from typing import Callable

from afd_async import metrics as M
from afd_async.runtime.context import RoleContext
from afd_async.runtime.student_actor import StudentActor
from afd_async.train.plan import Group

GroupMetrics = Callable[[Group, int, float, int], None]  # (group, rows, rollout seconds, policy version)


def group_metrics(rc: RoleContext) -> GroupMetrics:
    """What a written group adds to the role's metrics and the run's status (StudentActor's `metrics`)."""
    frames = rc.cfg.student.num_frames

    def on_group(group: Group, n: int, seconds: float, version: int) -> None:
        rc.metrics(M.STUDENT_ACTOR_ROLLOUTS).inc(n)
        rc.metrics(M.STUDENT_ACTOR_FRAMES).inc(n * frames)
        rc.metrics(M.STUDENT_ACTOR_ROLLOUT_SECONDS).observe(seconds)
        rc.metrics(M.STUDENT_ACTOR_POLICY_VERSION).set(version)
        rc.metrics(M.REPLAY_WRITTEN).inc(n)
        rc.redis.hincrby(rc.keys.status, "pairs_written", n)
        rc.metrics.beat()

    return on_group


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
