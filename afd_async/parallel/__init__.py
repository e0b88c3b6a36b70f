"""Data-parallel learners: torch.distributed set-up (`dist`) and per-rank feed shards (`sharded_feed`)."""

from afd_async.parallel.dist import (
    DistContext,
    DistributedConfigError,
    all_gather_list,
    all_gather_rows,
    disable_multicast,
    init_distributed,
    shard_slice,
    shutdown_distributed,
    unwrap,
    wrap_ddp,
)
from afd_async.parallel.sharded_feed import ShardedFeed, shard_batch

__all__ = [
    "DistContext", "DistributedConfigError", "ShardedFeed", "all_gather_list", "all_gather_rows", "disable_multicast",
    "init_distributed", "shard_batch", "shard_slice", "shutdown_distributed", "unwrap", "wrap_ddp",
]
