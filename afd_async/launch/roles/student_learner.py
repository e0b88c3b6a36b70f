"""`afd student-learner` wiring: θ and its updater, the D copy and its subscriber, outputs, checkpoint store,
θ_old publisher and feed around `StudentLearner`."""

from __future__ import annotations

from afd_async.config.root import RootConfig
from afd_async.launch.roles.learner_start import feed_client, start_learner
from afd_async.models.factory import make_discriminator, make_student
from afd_async.parallel.dist import shutdown_distributed
from afd_async.parallel.learner_world import NullPublisher, agree_on_checkpoint, barrier, rank_role
from afd_async.runtime.context import weight_endpoints
from afd_async.runtime.d_history import DHistory
from afd_async.runtime.learner_state import Checkpointer, open_store
from afd_async.runtime.student_learner import StudentLearner, d_copy
from afd_async.runtime.student_learner_role import train_student
from afd_async.security.curve import cluster_client_keys, cluster_server_keys
from afd_async.train.objectives import get_objective
from afd_async.train.outputs import RunOutputs
from afd_async.train.sync_loop import make_student_updater
from afd_async.transport import WeightPublisher, WeightSubscriber


def run_student_learner(cfg: RootConfig) -> int:
    rc, world, device, planner, text = start_learner(cfg, "student-learner", cfg.cluster.student_learner_ranks)
    student = make_student(cfg.student, text.dim, device, text_kind=cfg.text.kind)
    d = d_copy(make_discriminator(cfg.discriminator, text.dim, device, text_kind=cfg.text.kind))
    upd = make_student_updater(cfg, student, dist=world)
    outputs = RunOutputs(cfg, text) if world.is_main else None  # rank 0 evaluates and writes the run's outputs
    objective = get_objective(cfg.algo.name)
    c = cfg.cluster
    notify, fetch = weight_endpoints(c.host, c.student_learner_port)
    d_notify, d_fetch = weight_endpoints(c.d_learner_host, c.d_learner_port)
    store = open_store(cfg, rank_role("student-learner", world), rc.redis, rc.keys)
    agree_on_checkpoint(store, world)
    history = DHistory(store.dir / "d_history") if cfg.train.checkpoint_d_history else None
    publisher = (WeightPublisher(notify, fetch, curve=cluster_server_keys(c, "student-learner"),
                                 shm=c.weights_transport == "auto") if world.is_main
                 else NullPublisher())
    with publisher as pub, \
            WeightSubscriber(d_notify, d_fetch, curve=cluster_client_keys(c, "student-learner", "d-learner"),
                             shm=c.weights_transport == "auto", max_followers=c.weights_max_followers) as d_sub, \
            feed_client(cfg, "student-learner", 1, world.rank) as feed:
        learner = StudentLearner(updater=upd, d=d, d_subscriber=d_sub, publisher=pub, client=rc.redis, keys=rc.keys,
                                 encode_text=text.encode, run_seed=cfg.train.seed, warmup_groups=planner.warmup_groups,
                                 d_steps_per_batch=cfg.algo.d_steps_per_student_step,
                                 d_staleness=cfg.replay.d_staleness, needs_d=objective.student_waits_for_d,
                                 pixel_latent=cfg.student.kind == "tiny", history=history, device=device,
                                 rewards=objective.make_rewards(cfg),
                                 d_overlap=objective.reward == "d_score" and objective.loss == "nft")
        ckpt = Checkpointer(store, learner, every=cfg.train.checkpoint_every, ack=feed.ack,
                            on_saved=history.prune if history is not None else None, durable=lambda: barrier(world),
                            background=True)  # the file is written while the next step runs
        try:
            train_student(rc, learner, feed, ckpt, world, outputs, warmup_groups=planner.warmup_groups)
        finally:
            try:
                learner.close()
            finally:
                ckpt.close()  # a checkpoint being written is complete on disk before the process exits
    shutdown_distributed(world)  # leave the process group, or a rank's exit can wait on its peers
    return 0
