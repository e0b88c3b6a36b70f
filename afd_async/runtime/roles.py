"""Role wiring: config in, collaborators built, loop run. Entry points in `actors/`, `learners/` call these."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch

from afd_async import metrics as M
from afd_async.config.convert import ConfigError
from afd_async.config.prompts import train_prompts
from afd_async.config.root import RootConfig
from afd_async.config.train import resolve_device
from afd_async.models.factory import make_discriminator, make_rollout_policy, make_student, make_text_encoder
from afd_async.eval.d_probes import DProbeResult
from afd_async.parallel.dist import DistContext, shutdown_distributed
from afd_async.parallel.learner_world import (
    NullPublisher, agree_on_checkpoint, agree_to_stop, barrier, join_learner_world, rank_role,
)
from afd_async.parallel.sharded_feed import ShardedFeed
from afd_async.replay.trim import trim_acked
from afd_async.replay.writer import PairWriter
from afd_async.runtime.feeder import GroupFeed
from afd_async.runtime.groups import GroupClaims
from afd_async.runtime.d_history import DHistory
from afd_async.runtime.learner_state import Checkpointer, feeder_max_unacked, open_store
from afd_async.runtime.learners import DLearner, FeedLoop, StudentLearner, d_copy
from afd_async.runtime.student_actor import StudentActor, TeacherRequests
from afd_async.train.d_probe_monitor import make_probe_monitor
from afd_async.train.report import MetricLog
from afd_async.train.objectives import get_objective
from afd_async.train.plan import Planner
from afd_async.train.sync_loop import make_discriminator_updater, make_student_updater
from afd_async.security.curve import cluster_client_keys as curve_client
from afd_async.security.curve import cluster_server_keys as curve_server
from afd_async.store.connect import redis_client
from afd_async.store.keys import RunKeys
from afd_async.teacher.clips import CacheClipStore
from afd_async.train.outputs import RunOutputs
from afd_async.transport import FeedClient, FeedServer, WeightPublisher, WeightSubscriber

log = logging.getLogger(__name__)

FEEDER_DRAIN_S = 15.0  # longest a stopping feeder waits for its learners' last acks


def make_planner(cfg: RootConfig) -> Planner:
    return Planner(train_prompts(cfg), run_seed=cfg.train.seed, batch_size=cfg.train.batch_size,
                   rollouts_per_prompt=cfg.algo.rollouts_per_prompt, warmup_groups=cfg.algo.d_warmup_steps,
                   train_groups=cfg.train.steps)


def make_claims(cfg: RootConfig, client, keys: RunKeys, planner: Planner) -> GroupClaims:
    return GroupClaims(client, keys, total_groups=planner.total_groups, warmup_groups=planner.warmup_groups,
                       staleness=cfg.replay.staleness, lease_s=cfg.replay.group_lease_s)


def _metrics(cfg: RootConfig, role: str, *, ranks: int = 1):
    """Start the role's metrics endpoint; the ranks of a data-parallel learner take consecutive ports."""
    labels, port = M.start_role_metrics(role, port=cfg.cluster.metrics_port, host=cfg.cluster.host,
                                        tries=cfg.cluster.metrics_port_tries + ranks - 1)
    log.info("%s: metrics on %s:%d", role, cfg.cluster.host, port)
    return labels


def _torch_threads(cfg: RootConfig) -> None:
    if cfg.train.torch_threads:
        torch.set_num_threads(cfg.train.torch_threads)


def _learner_world(cfg: RootConfig, ranks: int) -> tuple[DistContext, torch.device]:
    """Join the role's learner world; returns it and the device this rank computes on.

    `train.device` is checked first (a clear error naming the key). CPU learners use gloo even where
    `auto` would pick nccl (a GPU host), as nccl cannot reduce CPU tensors; a data-parallel CUDA learner
    computes on its own GPU, `cuda:LOCAL_RANK`, the device `init_distributed` set.
    """
    device = resolve_device(cfg.train.device)
    backend = cfg.cluster.learner_backend
    if backend == "auto" and device.type != "cuda":
        backend = "gloo"
    if ranks > 1 and device.type == "cuda" and backend == "gloo":
        raise ConfigError(f"train.device={cfg.train.device!r} with cluster.learner_backend=gloo: gloo cannot all-gather "
                         "CUDA tensors; use learner_backend nccl (or auto) for data-parallel GPU learners")
    if ranks > 1 and device.type != "cuda" and backend == "nccl":
        raise ConfigError(f"train.device={cfg.train.device!r} with cluster.learner_backend=nccl: nccl needs CUDA "
                         "tensors; use learner_backend gloo (or auto) for CPU learners")
    ctx = join_learner_world(ranks=ranks, batch_size=cfg.train.batch_size, backend=backend)
    if ctx.distributed and device.type == "cuda":
        device = ctx.device  # torchrun: cuda:LOCAL_RANK
    return ctx, device


def tcp(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


def _ports(host: str, port: int) -> tuple[str, str]:
    return tcp(host, port), tcp(host, port + 1)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT, so role loops finish their current unit of work and exit."""
    stop = threading.Event()

    def handler(signum: int, _frame: Optional[object]) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _stopped(client, keys: RunKeys, stop: threading.Event) -> bool:
    if client.exists(keys.stop):
        stop.set()
    return stop.is_set()


# ---------------------------------------------------------------------------------------------- actor

def run_student_actor(cfg: RootConfig) -> int:
    device = resolve_device(cfg.train.device)  # a clear error naming the key, before anything is built
    labels = _metrics(cfg, "student-actor")
    _torch_threads(cfg)
    stop = stop_on_signals()
    r = redis_client(cfg.cluster)
    keys = RunKeys()
    planner = make_planner(cfg)
    text = make_text_encoder(cfg.text, cfg.student, device=str(device))  # embeddings come back on CPU
    policy = make_rollout_policy(cfg.student, text.dim, device)  # Wan LoRA: the `old` adapter view; tiny: the student
    notify, fetch = _ports(cfg.cluster.student_learner_host, cfg.cluster.student_learner_port)

    def on_group(group, n, seconds, version):
        labels(M.STUDENT_ACTOR_ROLLOUTS).inc(n)
        labels(M.STUDENT_ACTOR_FRAMES).inc(n * cfg.student.num_frames)
        labels(M.STUDENT_ACTOR_ROLLOUT_SECONDS).observe(seconds)
        labels(M.STUDENT_ACTOR_POLICY_VERSION).set(version)
        labels(M.REPLAY_WRITTEN).inc(n)
        r.hincrby(keys.status, "pairs_written", n)
        labels.beat()

    with WeightSubscriber(notify, fetch, curve=curve_client(cfg.cluster, "student-actor", "student-learner")) as sub, \
            PairWriter(r, stream=keys.pairs, blob_ttl_s=cfg.replay.blob_ttl_s) as writer:
        actor = StudentActor(
            policy=policy, encode_text=text.encode, planner=planner, claims=make_claims(cfg, r, keys, planner),
            requests=TeacherRequests(r, keys, planner, cfg.teacher.source.queue_key), writer=writer, subscriber=sub,
            teacher_clip=partial(CacheClipStore(r).cached_ref, cfg.teacher),
            run_seed=cfg.train.seed, timesteps=cfg.student.timesteps, shift=cfg.student.shift,
            num_frames=cfg.student.num_frames, staleness=cfg.replay.staleness, lookahead=cfg.replay.teacher_lookahead,
            teacher_wait_s=cfg.replay.teacher_wait_s, latent_dtype=cfg.replay.latent_dtype, metrics=on_group,
            device=device,
        )
        watcher = threading.Thread(target=lambda: [stop.wait(0.5) for _ in iter(lambda: _stopped(r, keys, stop), True)],
                                   daemon=True)
        watcher.start()
        written = actor.run(stop)
        # The plan is handed out, but a lease may still lapse (an actor died) or the feeder may re-roll a stale
        # group: stay until the run's stop key, or a re-rolled group would wait for an actor forever.
        while not stop.wait(0.2):
            written += actor.run(stop)
    log.info("student actor: %d groups written", written)
    return 0


# ---------------------------------------------------------------------------------------------- feeder

def run_feeder(cfg: RootConfig) -> int:
    labels = _metrics(cfg, "feeder")
    stop = stop_on_signals()
    r = redis_client(cfg.cluster)
    keys = RunKeys()
    planner = make_planner(cfg)
    claims = make_claims(cfg, r, keys, planner)
    clips = CacheClipStore(r)

    def teacher(ref: str) -> torch.Tensor:
        return clips.get(ref).frames

    def dropped(group: int, n: int) -> None:
        labels(M.REPLAY_DROPPED, reason="stale").inc(n)
        r.hincrby(keys.status, "pairs_dropped_stale", n)

    feeds = {name: GroupFeed(r, keys, learner=name, claims=claims, teacher=teacher, staleness=cfg.replay.staleness,
                             warmup_groups=planner.warmup_groups, dedupe_window_s=cfg.replay.dedupe_window_s,
                             on_drop=dropped)
             for name in ("discriminator", "student")}

    ranks = {"discriminator": cfg.cluster.d_learner_ranks, "student": cfg.cluster.student_learner_ranks}
    feeds = {name: ShardedFeed(feed, ranks[name]) if ranks[name] > 1 else feed for name, feed in feeds.items()}

    def counted(feed: GroupFeed | ShardedFeed):
        def next_batch(rank: int):
            batch = feed.next_batch(rank)
            if batch is not None:
                labels(M.REPLAY_READ).inc(len(batch.meta["pair_ids"]))
            return batch
        return next_batch

    d_ep, s_ep = _ports(cfg.cluster.host, cfg.cluster.feeder_port)
    cap = feeder_max_unacked(cfg)  # learners ack after checkpoints: let them hold a checkpoint's worth
    with FeedServer(d_ep, counted(feeds["discriminator"]), on_ack=feeds["discriminator"].on_ack,
                    on_lost=feeds["discriminator"].on_lost, max_unacked=cap,
                    curve=curve_server(cfg.cluster, "feeder")) as d_srv, \
         FeedServer(s_ep, counted(feeds["student"]), on_ack=feeds["student"].on_ack,
                    on_lost=feeds["student"].on_lost, max_unacked=cap,
                    curve=curve_server(cfg.cluster, "feeder")) as s_srv:
        log.info("feeder: D feed %s, student feed %s", d_srv.endpoint, s_srv.endpoint)
        while not _stopped(r, keys, stop):
            trim_acked(r, keys.pairs)
            labels(M.REPLAY_LENGTH).set(r.xlen(keys.pairs))
            labels.beat()
            stop.wait(1.0)
        # Learners ack their last groups after their final checkpoint: serve acks until they leave (bounded:
        # a dead learner's peer expires after the feed's heartbeat timeout).
        deadline = time.monotonic() + FEEDER_DRAIN_S
        while time.monotonic() < deadline and any(srv.stats().unacked for srv in (d_srv, s_srv)):
            threading.Event().wait(0.05)
    return 0


# ---------------------------------------------------------------------------------------------- learners

def _feed_client(cfg: RootConfig, offset: int, rank: int = 0) -> FeedClient:
    curve = curve_client(cfg.cluster, ("d-learner", "student-learner")[offset], "feeder")  # None: plain TCP
    return FeedClient(tcp(cfg.cluster.feeder_host, cfg.cluster.feeder_port + offset), rank=rank, window=2, curve=curve)


class _LearnerStart(NamedTuple):
    labels: Any  # the role's metric labels (`_metrics`)
    ctx: DistContext
    device: torch.device
    stop: threading.Event
    r: Any  # redis.Redis
    keys: RunKeys
    planner: Planner
    text: Any  # the text encoder


def _start_learner(cfg: RootConfig, role: str, ranks: int) -> _LearnerStart:
    """The start both learners share, in this order.

    Device check, metrics endpoint, torch threads, learner world, signal handling, Redis, plan, text
    encoder; torch is seeded with `train.seed` last, so the models built next draw the global RNG as
    the synchronous loop does.
    """
    resolve_device(cfg.train.device)  # a clear error naming the key, before the metrics port is taken
    labels = _metrics(cfg, role, ranks=ranks)
    _torch_threads(cfg)
    ctx, device = _learner_world(cfg, ranks)
    stop = stop_on_signals()
    r = redis_client(cfg.cluster)
    planner = make_planner(cfg)
    text = make_text_encoder(cfg.text, cfg.student, device=str(device))
    torch.manual_seed(cfg.train.seed)
    return _LearnerStart(labels, ctx, device, stop, r, RunKeys(), planner, text)


def run_d_learner(cfg: RootConfig) -> int:
    labels, ctx, device, stop, r, keys, planner, text = _start_learner(cfg, "d-learner", cfg.cluster.d_learner_ranks)
    make_student(cfg.student, text.dim, device)  # same global RNG draws as the sync loop before D is built
    d = make_discriminator(cfg.discriminator, text.dim, device)
    upd = make_discriminator_updater(cfg, d, dist=ctx)
    probe_log = MetricLog(Path(cfg.train.output_dir) / "metrics.jsonl") if ctx.is_main and cfg.train.d_probe_every else None

    def probed(record: dict, result: DProbeResult) -> None:  # D probes: a metrics.jsonl record (as afd sync writes) and gauges
        assert probe_log is not None
        probe_log.write(record)
        for name, value in result.as_dict("").items():
            labels(M.D_PROBE, probe=name).set(value)
        if record.get("d_probe_rho_physics") is not None:  # absent without ground truth, None when undefined
            labels(M.D_PROBE_RHO).set(record["d_probe_rho_physics"])

    labels(M.D_PROBE_RHO).set(float("nan"))  # not measured (yet, on this rank, or no ground truth), not ρ = 0

    # rank 0 probes (D's replicas are equal); built under fork_rng: the RNG the training uses is untouched
    probes = make_probe_monitor(cfg, text.encode, device, sink=probed) if probe_log is not None else None
    notify, fetch = _ports(cfg.cluster.host, cfg.cluster.d_learner_port)
    store = open_store(cfg, rank_role("d-learner", ctx), r, keys)
    agree_on_checkpoint(store, ctx)
    publisher = WeightPublisher(notify, fetch, curve=curve_server(cfg.cluster, "d-learner")) if ctx.is_main else NullPublisher()
    with publisher as pub, _feed_client(cfg, 0, ctx.rank) as feed:
        learner = DLearner(updater=upd, publisher=pub, client=r, keys=keys, encode_text=text.encode,
                           warmup_groups=planner.warmup_groups, steps_per_batch=cfg.algo.d_steps_per_student_step,
                           lr_after_warmup=get_objective(cfg.algo.name).d_lr_after_warmup(cfg.algo.lr_d),
                           pixel_latent=cfg.student.kind == "tiny",
                           device=device, probes=probes)
        ckpt = Checkpointer(store, learner, every=cfg.train.checkpoint_every, ack=feed.ack, durable=lambda: barrier(ctx))
        ckpt.restore()
        learner.publish()
        # staleness 0: D trains groups in plan order (0, 1, …), as the synchronous loop does
        loop = FeedLoop(feed, stop, checkpointer=ckpt, timing=lambda: learner.timing,
                        expected=(lambda: len(ckpt.ledger.trained)) if cfg.replay.staleness == 0 else None)
        # The run's stop key ends this learner even when no batch comes any more (the feeder has stopped).
        threading.Thread(target=lambda: [stop.wait(0.5) for _ in iter(lambda: _stopped(r, keys, stop), True)],
                         daemon=True).start()

        def process(batch) -> Optional[bool]:
            if ctx.distributed and agree_to_stop(ctx, stop.is_set()):
                return None  # every rank stops before this group: it goes back untrained
            t0 = time.monotonic()
            m = learner.process(batch)
            labels(M.D_STEPS).inc(1)
            labels(M.D_SAMPLES).inc(len(batch.meta["pair_ids"]))
            labels(M.D_LOSS).set(m["d_loss"])
            labels(M.D_ACCURACY).set(m["d_acc"])
            labels(M.D_STUDENT_SIGMOID).set(m["d_sigma_student"])
            labels(M.D_VERSION).set(learner.version)
            labels(M.D_STEP_SECONDS).observe(time.monotonic() - t0)
            labels(M.D_BATCH_WAIT).observe(loop.wait_s)
            labels(M.D_BUSY).set(loop.busy.ratio)
            r.hset(keys.status, mapping={"d_busy_ratio": round(loop.busy.ratio, 4),
                                         "d_busy_breakdown": json.dumps(loop.busy.breakdown())})
            labels.beat()
            _stopped(r, keys, stop)
            return False

        loop.run(process)
        if probes is not None:
            probes.finish(upd)  # the final D, unless its last step call was just probed
    if probe_log is not None:
        probe_log.close()
    shutdown_distributed(ctx)  # leave the process group, or a rank's exit can wait on its peers
    return 0


def run_student_learner(cfg: RootConfig) -> int:
    labels, ctx, device, stop, r, keys, planner, text = _start_learner(cfg, "student-learner",
                                                                       cfg.cluster.student_learner_ranks)
    student = make_student(cfg.student, text.dim, device)
    d = d_copy(make_discriminator(cfg.discriminator, text.dim, device))
    upd = make_student_updater(cfg, student, dist=ctx)
    outputs = RunOutputs(cfg, text) if ctx.is_main else None  # rank 0 evaluates and writes the run's outputs
    objective = get_objective(cfg.algo.name)
    notify, fetch = _ports(cfg.cluster.host, cfg.cluster.student_learner_port)
    d_notify, d_fetch = _ports(cfg.cluster.d_learner_host, cfg.cluster.d_learner_port)
    store = open_store(cfg, rank_role("student-learner", ctx), r, keys)
    agree_on_checkpoint(store, ctx)
    history = DHistory(store.dir / "d_history") if cfg.train.checkpoint_d_history else None
    publisher = (WeightPublisher(notify, fetch, curve=curve_server(cfg.cluster, "student-learner")) if ctx.is_main
                 else NullPublisher())
    with publisher as pub, \
            WeightSubscriber(d_notify, d_fetch, curve=curve_client(cfg.cluster, "student-learner", "d-learner")) as d_sub, \
            _feed_client(cfg, 1, ctx.rank) as feed:
        learner = StudentLearner(updater=upd, d=d, d_subscriber=d_sub, publisher=pub, client=r, keys=keys,
                                 encode_text=text.encode, run_seed=cfg.train.seed, warmup_groups=planner.warmup_groups,
                                 d_steps_per_batch=cfg.algo.d_steps_per_student_step,
                                 d_staleness=cfg.replay.d_staleness, needs_d=objective.student_waits_for_d,
                                 pixel_latent=cfg.student.kind == "tiny", history=history, device=device,
                                 rewards=objective.make_rewards(cfg))
        ckpt = Checkpointer(store, learner, every=cfg.train.checkpoint_every, ack=feed.ack,
                            on_saved=history.prune if history is not None else None, durable=lambda: barrier(ctx))
        resumed = ckpt.restore()
        learner.publish()
        r.hset(keys.status, "student_steps", upd.steps)
        # a resumed learner's "start" evaluation is of θ_ref, the initial policy (θ_old has moved on)
        if outputs is not None:
            r.hset(keys.status, "student_phase", "evaluating")  # the launcher's stall watch counts phases as progress
            outputs.start(upd, initial=upd.ref if resumed else None)
            r.hset(keys.status, "student_phase", "training")
        # staleness 0: train groups in plan order (W, W+1, …), as the synchronous loop does
        loop = FeedLoop(feed, stop, checkpointer=ckpt, timing=lambda: learner.timing,
                        expected=(lambda: planner.warmup_groups + upd.steps) if cfg.replay.staleness == 0 else None)

        def process(batch) -> Optional[bool]:
            if ctx.distributed and agree_to_stop(ctx, stop.is_set()):
                return None  # every rank stops before this group: it goes back untrained
            t0 = time.monotonic()
            m = learner.process(batch, stop)
            if m is None:
                return None  # stopped while waiting for D: the batch goes back untrained
            labels(M.S_STEPS).inc(1)
            labels(M.S_SAMPLES).inc(len(batch.meta["pair_ids"]))
            labels(M.S_VERSION).set(upd.version)
            labels(M.S_STEP_SECONDS).observe(time.monotonic() - t0)
            labels(M.S_BATCH_WAIT).observe(loop.wait_s)
            labels(M.S_BUSY).set(loop.busy.ratio)
            r.hset(keys.status, mapping={"student_busy_ratio": round(loop.busy.ratio, 4),
                                         "student_busy_breakdown": json.dumps(loop.busy.breakdown())})
            labels.beat()
            if outputs is None:  # ranks > 0: train and ack; rank 0 logs, evaluates and ends the run
                return upd.steps >= cfg.train.steps
            outputs.log_step(upd.steps, {**m, "batch_wait_s": loop.wait_s, "step_s": time.monotonic() - t0,
                                         **{f"time_{k}_s": v for k, v in learner.timing.items()},
                                         "checkpoint_s": loop.checkpoint_s})
            if cfg.train.eval_every and upd.steps % cfg.train.eval_every == 0 and upd.steps < cfg.train.steps:
                r.hset(keys.status, "student_phase", "evaluating")
                outputs.evaluate(upd)
                r.hset(keys.status, "student_phase", "training")
            return upd.steps >= cfg.train.steps

        if upd.steps < cfg.train.steps:  # a learner resumed after its last step only writes the outputs
            loop.run(process)
        else:
            ckpt.checkpoint()
        if upd.steps >= cfg.train.steps and outputs is not None:
            r.hset(keys.status, "student_phase", "writing outputs")
            summary, _ = outputs.finish(upd, d, d_version=learner.d_version, mode="async",
                                        extra={"status": _status(r, keys)})
            r.hset(keys.status, mapping={"done": 1, "final_physics_score": summary["final"]["physics_score"]})
            r.set(keys.stop, 1)
    shutdown_distributed(ctx)  # leave the process group, or a rank's exit can wait on its peers
    return 0


def _status(r, keys: RunKeys) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(keys.status).items()}
