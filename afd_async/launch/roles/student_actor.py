"""`afd student-actor` wiring: the rollout policy, the θ_old subscriber and the pair writer around `StudentActor`."""

from __future__ import annotations

from functools import partial

from afd_async.config.root import RootConfig
from afd_async.config.train import resolve_device
from afd_async.models.factory import make_rollout_policy, make_text_encoder
from afd_async.replay.writer import PairWriter
from afd_async.runtime.context import RoleContext, make_claims, make_planner, torch_threads, weight_endpoints
from afd_async.runtime.gpu_share import limit_gpu_memory
from afd_async.runtime.student_actor import StudentActor
from afd_async.runtime.student_actor_role import act, group_metrics, weight_sync_status
from afd_async.runtime.teacher_requests import TeacherRequests
from afd_async.security.curve import cluster_client_keys
from afd_async.teacher.clips import CacheClipStore
from afd_async.transport import WeightSubscriber


def run_student_actor(cfg: RootConfig) -> int:
    device = resolve_device(cfg.train.device)  # a clear error naming the key, before anything is built
    limit_gpu_memory(cfg.cluster.gpu_memory_fraction, "student-actor", device)  # before any model
    rc = RoleContext.build(cfg, "student-actor")
    torch_threads(cfg)
    r, keys = rc.redis, rc.keys
    planner = make_planner(cfg)
    text = make_text_encoder(cfg.text, cfg.student, device=str(device))  # embeddings come back on CPU
    # Wan LoRA: the `old` adapter view; tiny: the student
    policy = make_rollout_policy(cfg.student, text.dim, device, text_kind=cfg.text.kind)
    notify, fetch = weight_endpoints(cfg.cluster.student_learner_host, cfg.cluster.student_learner_port)
    curve = cluster_client_keys(cfg.cluster, "student-actor", "student-learner")
    with WeightSubscriber(notify, fetch, curve=curve, shm=cfg.cluster.weights_transport == "auto",
                          max_followers=cfg.cluster.weights_max_followers) as sub, \
            PairWriter(r, stream=keys.pairs, blob_ttl_s=cfg.replay.blob_ttl_s) as writer:
        actor = StudentActor(
            policy=policy, encode_text=text.encode, planner=planner, claims=make_claims(cfg, r, keys, planner),
            requests=TeacherRequests(r, keys, planner, cfg.teacher.source.queue_key), writer=writer, subscriber=sub,
            teacher_clip=partial(CacheClipStore(r).cached_ref, cfg.teacher),
            run_seed=cfg.train.seed, timesteps=cfg.student.timesteps, shift=cfg.student.shift,
            num_frames=cfg.student.num_frames, staleness=cfg.replay.staleness, lookahead=cfg.replay.teacher_lookahead,
            teacher_wait_s=cfg.replay.teacher_wait_s, latent_dtype=cfg.replay.latent_dtype,
            metrics=group_metrics(rc, device), on_weights=weight_sync_status(rc),
            device=device,
        )
        return act(rc, actor)
