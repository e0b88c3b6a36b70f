"""The D learner as a role: restore, publish D, then train each fed group and publish D after it.

    restore the newest checkpoint → publish D
    for batch (plan order at staleness 0): BT step(s) → publish D → metrics, status
    on stop, done or feed end: final checkpoint and its acks; the D probes' last record
"""

from __future__ import annotations

import json
import time
from typing import Callable, Optional

from afd_async import metrics as M
from afd_async.eval.d_probes import DProbeResult
from afd_async.parallel.dist import DistContext
from afd_async.parallel.learner_world import agree_to_stop
from afd_async.runtime.context import RoleContext
from afd_async.runtime.background_probes import BackgroundProbes
from afd_async.runtime.d_learner import DLearner
from afd_async.runtime.feed_loop import FeedLoop
from afd_async.runtime.gpu_share import record_gpu_peak
from afd_async.runtime.learner_state import Checkpointer
from afd_async.seams import BatchSource
from afd_async.train.d_probe_monitor import DProbeMonitor
from afd_async.train.report import MetricLog
from afd_async.transport import ReceivedBatch


def probe_sink(rc: RoleContext, probe_log: MetricLog) -> Callable[[dict, DProbeResult], None]:
    """Where D probe results go: a metrics.jsonl record (as `afd sync` writes) and the probe gauges."""

    def probed(record: dict, result: DProbeResult) -> None:
        probe_log.write(record)
        for name, value in result.as_dict("").items():
            rc.metrics(M.D_PROBE, probe=name).set(value)
        if record.get("d_probe_rho_physics") is not None:  # absent without ground truth, None when undefined
            rc.metrics(M.D_PROBE_RHO).set(record["d_probe_rho_physics"])
        if record.get("d_probe_rho_physics_heldout") is not None:
            rc.metrics(M.D_PROBE_RHO_HELDOUT).set(record["d_probe_rho_physics_heldout"])

    return probed


def train_d(rc: RoleContext, learner: DLearner, feed: BatchSource, ckpt: Checkpointer, world: DistContext,
            probes: Optional[DProbeMonitor | BackgroundProbes]) -> None:
    """Train D on the feed until the run stops or the feed ends."""
    rc.metrics(M.D_PROBE_RHO).set(float("nan"))  # not measured (yet, on this rank, or no ground truth), not ρ = 0
    ckpt.restore()
    learner.publish()
    rc.announce_ready()
    # staleness 0: D trains groups in plan order (0, 1, …), as the synchronous loop does
    loop = FeedLoop(feed, rc.stop, checkpointer=ckpt, timing=lambda: learner.timing,
                    expected=(lambda: len(ckpt.ledger.trained)) if rc.cfg.replay.staleness == 0 else None)
    rc.watch_stop_key()  # ends this learner even when no batch comes any more (the feeder has stopped)

    def process(batch: ReceivedBatch) -> Optional[bool]:
        if world.distributed and agree_to_stop(world, rc.stop.is_set()):
            return None  # every rank stops before this group: it goes back untrained
        t0 = time.monotonic()
        m = learner.process(batch)
        rc.metrics(M.D_STEPS).inc(1)
        rc.metrics(M.D_SAMPLES).inc(len(batch.meta["pair_ids"]))
        rc.metrics(M.D_LOSS).set(m["d_loss"])
        rc.metrics(M.D_ACCURACY).set(m["d_acc"])
        rc.metrics(M.D_STUDENT_SIGMOID).set(m["d_sigma_student"])
        rc.metrics(M.D_VERSION).set(learner.version)
        rc.metrics(M.D_STEP_SECONDS).observe(time.monotonic() - t0)
        rc.metrics(M.D_BATCH_WAIT).observe(loop.wait_s)
        rc.metrics(M.D_BUSY).set(loop.busy.ratio)
        rc.set_status(d_busy_ratio=round(loop.busy.ratio, 4), d_busy_breakdown=json.dumps(loop.busy.breakdown()))
        record_gpu_peak(rc, learner.device)
        rc.metrics.beat()
        rc.stopped()
        return False

    loop.run(process)
    if probes is not None:
        probes.finish(learner.updater)  # (queued probes first) the final D, unless its last step call was just probed
