"""`afd d-learner` wiring: D, its updater and probes, checkpoint store, weights publisher and feed around `DLearner`."""

from __future__ import annotations

from pathlib import Path

from afd_async.config.root import RootConfig
from afd_async.launch.roles.learner_start import feed_client, start_learner
from afd_async.models.factory import make_discriminator, make_student
from afd_async.parallel.dist import shutdown_distributed
from afd_async.parallel.learner_world import NullPublisher, agree_on_checkpoint, barrier, rank_role
from afd_async.runtime.background_probes import BackgroundProbes
from afd_async.runtime.context import weight_endpoints
from afd_async.runtime.d_learner import DLearner
from afd_async.runtime.d_learner_role import probe_sink, train_d
from afd_async.runtime.learner_state import Checkpointer, open_store
from afd_async.security.curve import cluster_server_keys
from afd_async.train.d_probe_monitor import make_probe_monitor
from afd_async.train.objectives import get_objective
from afd_async.train.report import MetricLog
from afd_async.train.sync_loop import make_discriminator_updater
from afd_async.transport import WeightPublisher


def run_d_learner(cfg: RootConfig) -> int:
    rc, world, device, planner, text = start_learner(cfg, "d-learner", cfg.cluster.d_learner_ranks)
    # same global RNG draws as the sync loop before D is built
    make_student(cfg.student, text.dim, device, text_kind=cfg.text.kind)
    d = make_discriminator(cfg.discriminator, text.dim, device, text_kind=cfg.text.kind)
    upd = make_discriminator_updater(cfg, d, dist=world)
    probe_log = MetricLog(Path(cfg.train.output_dir) / "metrics.jsonl") if world.is_main and cfg.train.d_probe_every else None
    # rank 0 probes (D's replicas are equal); built under fork_rng: the RNG the training uses is untouched
    monitor = make_probe_monitor(cfg, text.encode, device, sink=probe_sink(rc, probe_log)) if probe_log is not None else None
    # on CPU the probes run on a thread, on copies of D, so D's publish does not wait for them; on an accelerator
    # they stay inline: the copies would take its memory, and its stream runs the kernels one after another anyway
    probes = BackgroundProbes(monitor) if monitor is not None and device.type == "cpu" else monitor
    notify, fetch = weight_endpoints(cfg.cluster.host, cfg.cluster.d_learner_port)
    store = open_store(cfg, rank_role("d-learner", world), rc.redis, rc.keys)
    agree_on_checkpoint(store, world)
    publisher = (WeightPublisher(notify, fetch, curve=cluster_server_keys(cfg.cluster, "d-learner"),
                                 shm=cfg.cluster.weights_transport == "auto") if world.is_main
                 else NullPublisher())
    with publisher as pub, feed_client(cfg, "d-learner", 0, world.rank) as feed:
        learner = DLearner(updater=upd, publisher=pub, client=rc.redis, keys=rc.keys, encode_text=text.encode,
                           warmup_groups=planner.warmup_groups, steps_per_batch=cfg.algo.d_steps_per_student_step,
                           lr_after_warmup=get_objective(cfg.algo.name).d_lr_after_warmup(cfg.algo.lr_d),
                           pixel_latent=cfg.student.kind == "tiny", device=device, probes=probes)
        ckpt = Checkpointer(store, learner, every=cfg.train.checkpoint_every, ack=feed.ack, durable=lambda: barrier(world),
                            background=True)  # the file is written while the next step runs
        try:
            train_d(rc, learner, feed, ckpt, world, probes)
        finally:
            ckpt.close()  # a checkpoint being written is complete on disk before the process exits
            if isinstance(probes, BackgroundProbes):
                probes.close()  # their records are written before the log is closed
    if probe_log is not None:
        probe_log.close()
    shutdown_distributed(world)  # leave the process group, or a rank's exit can wait on its peers
    return 0
