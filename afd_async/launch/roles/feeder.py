"""`afd feeder` wiring: the teacher-clip store and the two learners' `FeedServer`s around the feeds."""

from __future__ import annotations

import torch

from afd_async.config.root import RootConfig
from afd_async.runtime.context import RoleContext, make_claims, make_planner, tcp
from afd_async.runtime.feeder_role import counted, make_feeds, serve
from afd_async.runtime.learner_state import feeder_max_unacked
from afd_async.security.curve import cluster_server_keys
from afd_async.teacher.clips import CacheClipStore
from afd_async.transport import FeedServer


def run_feeder(cfg: RootConfig) -> int:
    rc = RoleContext.build(cfg, "feeder")
    planner = make_planner(cfg)
    claims = make_claims(cfg, rc.redis, rc.keys, planner)
    clips = CacheClipStore(rc.redis)

    def teacher(ref: str) -> torch.Tensor:
        return clips.get(ref).frames

    feeds = make_feeds(rc, claims, teacher, warmup_groups=planner.warmup_groups,
                       ranks={"discriminator": cfg.cluster.d_learner_ranks, "student": cfg.cluster.student_learner_ranks})
    d_ep, s_ep = tcp(cfg.cluster.host, cfg.cluster.feeder_port), tcp(cfg.cluster.host, cfg.cluster.feeder_port + 1)
    cap = feeder_max_unacked(cfg)  # learners ack after checkpoints: let them hold a checkpoint's worth
    d, s = feeds["discriminator"], feeds["student"]
    with FeedServer(d_ep, counted(rc, d), on_ack=d.on_ack, on_lost=d.on_lost, max_unacked=cap,
                    curve=cluster_server_keys(cfg.cluster, "feeder")) as d_srv, \
         FeedServer(s_ep, counted(rc, s), on_ack=s.on_ack, on_lost=s.on_lost, max_unacked=cap,
                    curve=cluster_server_keys(cfg.cluster, "feeder")) as s_srv:
        return serve(rc, d_srv, s_srv)
