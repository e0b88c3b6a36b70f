"""`afd feeder`: pair stream → group batches → the two learners' ZeroMQ feeds."""

from __future__ import annotations

from afd_async.config.root import RootConfig


def main(cfg: RootConfig) -> int:
    from afd_async.launch.roles.feeder import run_feeder  # defers torch to the role

    return run_feeder(cfg)
