"""One learner over several processes: torch.distributed set-up from torchrun's environment.

A learner started by `torchrun --nproc-per-node N` finds RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT in its environment; started plainly it
finds none and runs as a world of one, with no process group at all (so the
single-process path stays exactly the code that `afd sync` checks).

Gradients are averaged by `DistributedDataParallel` (NCCL on GPUs, gloo on
CPUs), not by hand: DDP overlaps the all-reduce with the backward pass in
buckets, which is where multi-GPU efficiency comes from.

NVLink multicast (NVLS) stays off: the lent multi-GPU hosts do not support it
reliably and NCCL would otherwise try it on its own, so `init_distributed` sets
the three switches before the first communicator exists, overriding any value
inherited from the caller's environment.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Literal, Mapping, MutableMapping, Optional

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

Backend = Literal["auto", "nccl", "gloo"]

# NVLink multicast off, in NCCL, in PyTorch's symmetric memory and in NVSHMEM.
NO_MULTICAST_ENV: Mapping[str, str] = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}


class DistributedConfigError(ValueError):
    """The torchrun environment or the batch layout cannot form a valid learner world."""


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the learner's world.

    Attributes:
        rank: global rank; rank 0 publishes weights, writes checkpoints and outputs.
        world_size: number of learner processes (1 without torchrun).
        local_rank: rank on this host; picks the GPU.
        device: the device this rank computes on.
        backend: "nccl", "gloo", or "none" for a world of one.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """A process group exists (DDP wraps the models), possibly of one rank (to measure DDP's own cost)."""
        return self.backend != "none"

    def shard(self, global_batch: int) -> slice:
        """This rank's rows of a global batch (equal, contiguous shards: rank r gets block r)."""
        return shard_slice(global_batch, self.rank, self.world_size)


def shard_slice(global_batch: int, rank: int, world_size: int) -> slice:
    """Rows `[rank·b, (rank+1)·b)` with `b = global_batch / world_size`.

    Equal shards keep DDP's average of per-rank mean losses equal to the
    global mean loss, which is what makes N ranks reproduce one process.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise DistributedConfigError(f"rank {rank} is outside a world of {world_size}")
    if global_batch % world_size:
        raise DistributedConfigError(
            f"a learner batch of {global_batch} does not split evenly over {world_size} ranks; "
            f"set train.batch_size to a multiple of {world_size}")
    b = global_batch // world_size
    return slice(rank * b, (rank + 1) * b)


def disable_multicast(env: Optional[MutableMapping[str, str]] = None) -> MutableMapping[str, str]:
    """Write the NVLS-off switches into `env` (default: this process's environment) and return it."""
    target = os.environ if env is None else env
    target.update(NO_MULTICAST_ENV)
    return target


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except KeyError:
        raise DistributedConfigError(f"{name} is not set; start multi-process learners with torchrun") from None
    except ValueError:
        raise DistributedConfigError(f"{name}={env[name]!r} is not an integer") from None


def init_distributed(backend: Backend = "auto", *, timeout_s: float = 300.0,
                     env: Optional[Mapping[str, str]] = None, group_of_one: bool = False) -> DistContext:
    """Join the learner's process group if torchrun started us; otherwise a world of one.

    `timeout_s` bounds every collective: a dead peer turns into an error after
    that long instead of a hang (the most common multi-GPU failure).
    `group_of_one` forms a process group (and DDP) even for one torchrun rank,
    so a benchmark can separate DDP's own cost from scaling.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env or (int(env.get("WORLD_SIZE", "1")) <= 1 and not group_of_one):
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        return DistContext(device=device)
    rank, world, local = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE"), _env_int(env, "LOCAL_RANK")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in env:
            raise DistributedConfigError(f"{name} is not set; start multi-process learners with torchrun")
    cuda = torch.cuda.is_available()
    chosen = ("nccl" if cuda else "gloo") if backend == "auto" else backend
    if chosen == "nccl":
        if not cuda:
            raise DistributedConfigError("backend nccl needs CUDA; use gloo on CPUs")
        if local >= torch.cuda.device_count():
            raise DistributedConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs are visible")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    disable_multicast()
    if not dist.is_initialized():
        kwargs = {"device_id": device} if chosen == "nccl" else {}
        dist.init_process_group(chosen, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    log.info("learner rank %d/%d on %s (%s)", rank, world, device, chosen)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device, backend=chosen)


def shutdown_distributed(ctx: DistContext) -> None:
    """Leave the process group (no-op for a world of one)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP around `module` for a multi-rank world, the module itself otherwise.

    DDP broadcasts rank 0's parameters and buffers at construction, so every
    rank starts from identical weights even if they were built differently.
    """
    if not ctx.distributed:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def all_gather_rows(local: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Concatenate equal-sized per-rank tensors along dim 0 in rank order (identity for one rank).

    Used for the discriminator's scores: advantages are normalised over the
    whole group (§2.3), so every rank needs every score.
    """
    if not ctx.distributed:
        return local
    parts = [torch.empty_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(parts, local.contiguous())
    return torch.cat(parts, dim=0)


def all_gather_list(local: list, ctx: DistContext) -> list:
    """Concatenate per-rank Python lists in rank order (prompt ids for prompt-group advantages)."""
    if not ctx.distributed:
        return list(local)
    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, list(local))
    return [x for part in parts for x in part]


def reduce_metrics(metrics: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Step metrics of the global batch from per-rank ones: `*_min` → min, `*_max` → max, the rest → mean.

    Means of per-rank means are global means because shards are equal; spreads
    (`*_std`) become the mean of per-rank spreads, an approximation.
    """
    if not ctx.distributed:
        return metrics
    keys = sorted(metrics)
    out: dict[str, float] = {}
    for op, pick in ((dist.ReduceOp.MIN, lambda k: k.endswith("_min")), (dist.ReduceOp.MAX, lambda k: k.endswith("_max")),
                     (dist.ReduceOp.SUM, lambda k: not (k.endswith("_min") or k.endswith("_max")))):
        chosen = [k for k in keys if pick(k)]
        if not chosen:
            continue
        t = torch.tensor([float(metrics[k]) for k in chosen], dtype=torch.float64, device=ctx.device)
        dist.all_reduce(t, op=op)
        scale = ctx.world_size if op == dist.ReduceOp.SUM else 1
        out.update({k: float(v) / scale for k, v in zip(chosen, t.tolist())})
    return out
