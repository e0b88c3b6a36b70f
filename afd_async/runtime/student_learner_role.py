"""The student learner as a role: restore, publish θ_old, evaluate, train each fed group, write the outputs.

    restore the newest checkpoint → publish θ_old → rank 0: the "start" evaluation
    for batch (plan order at staleness 0): wait for D → NFT step → publish θ_old (in the background) → metrics, log
        rank 0, every `train.eval_every` steps: evaluate
    after `train.steps`: rank 0 writes the run's outputs, marks the run done and sets its stop key
"""

from __future__ import annotations

import json
import time
from typing import Callable, Optional

from afd_async import metrics as M
from afd_async.parallel.dist import DistContext
from afd_async.parallel.learner_world import agree_to_stop
from afd_async.runtime.context import RoleContext
from afd_async.runtime.feed_loop import FeedLoop
from afd_async.runtime.gpu_share import record_gpu_peak
from afd_async.runtime.learner_state import Checkpointer
from afd_async.runtime.student_learner import StudentLearner
from afd_async.seams import BatchSource
from afd_async.train.outputs import RunOutputs
from afd_async.transport import ReceivedBatch


def _evaluating(rc: RoleContext, evaluate: Callable[[], object]) -> None:
    rc.set_status(student_phase="evaluating")  # the launcher's stall watch counts phases as progress
    evaluate()
    rc.set_status(student_phase="training")


def train_student(rc: RoleContext, learner: StudentLearner, feed: BatchSource, ckpt: Checkpointer, world: DistContext,
                  outputs: Optional[RunOutputs], *, warmup_groups: int) -> None:
    """Train the student on the feed for `train.steps` steps (or until the run stops); rank 0 ends the run."""
    cfg, upd = rc.cfg, learner.updater
    resumed = ckpt.restore()
    learner.publish()
    rc.announce_ready()
    rc.set_status(student_steps=upd.steps)
    # a resumed learner's "start" evaluation is of θ_ref, the initial policy (θ_old has moved on)
    if outputs is not None:
        _evaluating(rc, lambda: outputs.start(upd, initial=upd.ref if resumed else None))
    # staleness 0: train groups in plan order (W, W+1, …), as the synchronous loop does
    loop = FeedLoop(feed, rc.stop, checkpointer=ckpt, timing=lambda: learner.timing,
                    expected=(lambda: warmup_groups + upd.steps) if cfg.replay.staleness == 0 else None)

    def process(batch: ReceivedBatch) -> Optional[bool]:
        if world.distributed and agree_to_stop(world, rc.stop.is_set()):
            return None  # every rank stops before this group: it goes back untrained
        t0 = time.monotonic()
        m = learner.process(batch, rc.stop)
        if m is None:
            return None  # stopped while waiting for D: the batch goes back untrained
        rc.metrics(M.S_STEPS).inc(1)
        rc.metrics(M.S_SAMPLES).inc(len(batch.meta["pair_ids"]))
        rc.metrics(M.S_VERSION).set(upd.version)
        rc.metrics(M.S_STEP_SECONDS).observe(time.monotonic() - t0)
        rc.metrics(M.S_BATCH_WAIT).observe(loop.wait_s)
        rc.metrics(M.S_BUSY).set(loop.busy.ratio)
        rc.set_status(student_busy_ratio=round(loop.busy.ratio, 4),
                      student_busy_breakdown=json.dumps(loop.busy.breakdown()))
        record_gpu_peak(rc, learner.device)
        rc.metrics.beat()
        if outputs is None:  # ranks > 0: train and ack; rank 0 logs, evaluates and ends the run
            return upd.steps >= cfg.train.steps
        outputs.log_step(upd.steps, {**m, "batch_wait_s": loop.wait_s, "step_s": time.monotonic() - t0,
                                     **{f"time_{k}_s": v for k, v in learner.timing.items()},
                                     "checkpoint_s": loop.checkpoint_s})
        if cfg.train.eval_every and upd.steps % cfg.train.eval_every == 0 and upd.steps < cfg.train.steps:
            _evaluating(rc, lambda: outputs.evaluate(upd))
        return upd.steps >= cfg.train.steps

    if upd.steps < cfg.train.steps:  # a learner resumed after its last step only writes the outputs
        loop.run(process)
    else:
        ckpt.checkpoint()
    learner.flush()  # the last version is served (and L set) before the run's end is marked
    if upd.steps >= cfg.train.steps and outputs is not None:
        rc.set_status(student_phase="writing outputs")
        summary, _ = outputs.finish(upd, learner.d, d_version=learner.d_version, mode="async",
                                    extra={"status": rc.status()})
        rc.set_status(done=1, final_physics_score=summary["final"]["physics_score"])
        rc.redis.set(rc.keys.stop, 1)
