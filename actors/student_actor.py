"""`afd student-actor`: roll out θ_old on planned groups, pair with teacher clips, write pairs."""

from __future__ import annotations

from afd_async.config.root import RootConfig


def main(cfg: RootConfig) -> int:
    from afd_async.launch.roles.student_actor import run_student_actor  # defers torch (models) to the role

    return run_student_actor(cfg)
