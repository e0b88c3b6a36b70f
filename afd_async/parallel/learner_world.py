"""A learner role as N torchrun ranks: who binds, who writes, and how checkpoints stay consistent.

Learner wiring (`launch/roles/`) calls these so the one-rank path is unchanged:

    ctx = join_learner_world(ranks=cfg.cluster.student_learner_ranks, ...)   # world of one without torchrun
    store = open_store(cfg, rank_role(role, ctx), ...)                        # one checkpoint folder per rank
    agree_on_checkpoint(store, ctx)                                           # every rank resumes the same step
    Checkpointer(..., durable=lambda: barrier(ctx))                           # acks only once all ranks are durable
    publisher = WeightPublisher(...) if ctx.is_main else NullPublisher()      # rank 0 publishes

Each rank checkpoints its own replica (DDP keeps them identical; a LoRA
learner's replica is megabytes) together with its own ledger of trained groups
and pending acks; the feed (`ShardedFeed`) acks a group in Redis only when
every rank acked its block. The barrier between "checkpoint durable" and "ack"
makes a rank's ack mean "every rank can resume past this step", and
`agree_on_checkpoint` makes all ranks resume from the newest step that every
rank has durable (a rank killed while writing leaves the others one
checkpoint ahead; that checkpoint's acks never went out, so nothing is lost).
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

import torch
import torch.distributed as dist

from afd_async.parallel.dist import Backend, DistContext, DistributedConfigError, init_distributed, shard_slice

log = logging.getLogger(__name__)


def join_learner_world(*, ranks: int, batch_size: int, backend: Backend = "auto", timeout_s: float = 600.0) -> DistContext:
    """This process's place among the role's `ranks` learner processes, checked against torchrun's world."""
    ctx = init_distributed(backend, timeout_s=timeout_s)
    if ctx.world_size != ranks:
        raise DistributedConfigError(
            f"the config asks for {ranks} learner rank(s) but this process is in a world of {ctx.world_size}; "
            f"start the role with `torchrun --nproc-per-node {ranks}` (afd run does) or set the ranks to "
            f"{ctx.world_size}")
    shard_slice(batch_size, ctx.rank, ctx.world_size)  # a batch that does not split says so now, not mid-run
    return ctx


def rank_role(role: str, ctx: DistContext) -> str:
    """The checkpoint folder name of this rank (`role` itself for one rank, so old folders still resume)."""
    return role if ctx.world_size == 1 else f"{role}/rank-{ctx.rank}"


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (bounded by the process group's timeout); a no-op for one rank."""
    if ctx.distributed:
        dist.barrier()


def agree_to_stop(ctx: DistContext, stopping: bool) -> bool:
    """True on every rank when any rank is stopping (one tiny all-reduce per step, before the step).

    Ranks train the same groups in lockstep, so each calls this at the same point of
    its collective sequence; stopping together keeps their checkpoints at the same
    step and no rank is left inside a DDP all-reduce that its peer never joins.
    """
    if not ctx.distributed:
        return stopping
    t = torch.tensor([int(stopping)], dtype=torch.int32, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def agree_on_checkpoint(store: Any, ctx: DistContext) -> int:
    """Make every rank's newest checkpoint the same step: drop any newer than the world's minimum.

    `store` is a `runtime.learner_state.CheckpointStore`. Returns the agreed index (−1: none).
    """
    mine = max(store.indices(), default=-1)
    if not ctx.distributed:
        return mine
    t = torch.tensor([mine], dtype=torch.long, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    agreed = int(t.item())
    for index in store.indices():
        if index > agreed:
            log.warning("rank %d: checkpoint %d is ahead of the other ranks (%d); dropped (its acks never went out)",
                        ctx.rank, index, agreed)
            shutil.rmtree(store.path(index), ignore_errors=True)
    if agreed >= 0 and agreed not in store.indices():
        raise DistributedConfigError(
            f"rank {ctx.rank} has no checkpoint {agreed} that the other ranks resume from (found {store.indices()}); "
            f"the per-rank checkpoint folders were changed by hand")
    return agreed


class NullPublisher:
    """What ranks other than 0 get instead of a `WeightPublisher`: only rank 0 binds and publishes."""

    def __enter__(self) -> NullPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def publish(self, version: int, state_dict: Any, **kwargs: Any) -> None:
        return None
