"""Data-parallel learners: torch.distributed set-up (`parallel.dist`) and per-rank feed shards
(`parallel.sharded_feed`). Import the submodules: `dist` needs only torch, so a GPU host without
the transport's packages can still run `train.replica_check`."""
