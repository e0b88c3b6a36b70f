"""`afd d-learner`: prompt-paired Bradley–Terry steps on fed batches; publishes D weights."""

from __future__ import annotations

from afd_async.config.root import RootConfig


def main(cfg: RootConfig) -> int:
    from afd_async.launch.roles.d_learner import run_d_learner  # defers torch to the role

    return run_d_learner(cfg)
