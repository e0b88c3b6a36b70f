"""The start both learners share: device, metrics, learner world, `RoleContext`, plan, text encoder, seed."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from afd_async.config.convert import ConfigError
from afd_async.config.root import RootConfig
from afd_async.config.train import resolve_device
from afd_async.models.factory import make_text_encoder
from afd_async.parallel.dist import DistContext
from afd_async.parallel.learner_world import join_learner_world
from afd_async.runtime.context import RoleContext, make_planner, start_metrics, tcp, torch_threads
from afd_async.runtime.gpu_share import limit_gpu_memory
from afd_async.security.curve import cluster_client_keys
from afd_async.train.plan import Planner
from afd_async.transport import FeedClient


class LearnerStart(NamedTuple):
    rc: RoleContext
    world: DistContext
    device: torch.device
    planner: Planner
    text: Any  # the text encoder


def learner_world(cfg: RootConfig, ranks: int) -> tuple[DistContext, torch.device]:
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
    world = join_learner_world(ranks=ranks, batch_size=cfg.train.batch_size, backend=backend)
    if world.distributed and device.type == "cuda":
        device = world.device  # torchrun: cuda:LOCAL_RANK
    return world, device


def start_learner(cfg: RootConfig, role: str, ranks: int) -> LearnerStart:
    """In this order: device check, metrics endpoint, torch threads, learner world, GPU share, `RoleContext`
    (signals, Redis), plan, text encoder; torch is seeded with `train.seed` last, so the models built
    next draw the global RNG as the synchronous loop does."""
    resolve_device(cfg.train.device)  # a clear error naming the key, before the metrics port is taken
    metrics = start_metrics(cfg, role, ranks=ranks)
    torch_threads(cfg)
    world, device = learner_world(cfg, ranks)
    limit_gpu_memory(cfg.cluster.gpu_memory_fraction, role, device)  # before any model: the cap holds for all
    rc = RoleContext.build(cfg, role, metrics=metrics)
    planner = make_planner(cfg)
    text = make_text_encoder(cfg.text, cfg.student, device=str(device))
    torch.manual_seed(cfg.train.seed)
    return LearnerStart(rc, world, device, planner, text)


def feed_client(cfg: RootConfig, role: str, offset: int, rank: int = 0) -> FeedClient:
    """The learner's end of its feed: the feeder serves D on `feeder_port`, the student on `feeder_port + 1`."""
    curve = cluster_client_keys(cfg.cluster, role, "feeder")  # None: plain TCP
    return FeedClient(tcp(cfg.cluster.feeder_host, cfg.cluster.feeder_port + offset), rank=rank, window=2, curve=curve)
