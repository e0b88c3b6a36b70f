"""`afd student-learner`: NFT steps scored by the newest allowed D; publishes θ_old to the actors."""

from __future__ import annotations

from afd_async.config.root import RootConfig


def main(cfg: RootConfig) -> int:
    from afd_async.launch.roles.student_learner import run_student_learner  # defers torch to the role

    return run_student_learner(cfg)
