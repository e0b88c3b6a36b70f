"""What each benchmark size runs: rows, seeds, evaluation set; the training deltas live in the Hydra overlay.

A *row* is one way of producing a student from the same pretrained start with
the same teacher-query budget: `(D warm-up steps + steps) x batch` teacher
clips, identical for every row because every row composes the same overlay
(`configs/experiment/quality_<size>.yaml`) and changes only `algo` and the
staleness bound. `base` is the pretrained student itself (no training).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass(frozen=True)
class Row:
    """One table row.

    Attributes:
        name: label in the table.
        algo: `afd | sft | gan | frozen_d`, or None for the untrained base.
        mode: `run` (async, `afd run`), `sync` (`afd sync`, the oracle), or `base`.
        staleness: k for `afd run` (ignored otherwise).
    """

    name: str
    algo: Optional[str]
    mode: Literal["run", "sync", "base"]
    staleness: int = 2

    def overrides(self) -> list[str]:
        if self.mode == "base":
            return []
        out = [f"algo={self.algo}"]
        if self.mode == "run":
            out.append(f"replay.staleness={self.staleness}")
        return out


def default_rows(main_mode: Literal["run", "sync"], k: int) -> tuple[Row, ...]:
    """base, AFD / SFT / GAN / frozen-D through `main_mode` at staleness k, AFD at k = 0, AFD through the sync oracle."""
    rows = [
        Row("base", None, "base"),
        Row("AFD", "afd", main_mode, k),
        Row("SFT", "sft", main_mode, k),
        Row("GAN", "gan", main_mode, k),
        Row("frozen-D", "frozen_d", main_mode, k),
    ]
    if main_mode == "run":
        rows += [Row("AFD k=0", "afd", "run", 0), Row("AFD sync", "afd", "sync")]
    return tuple(rows)


@dataclass(frozen=True)
class Plan:
    """A benchmark size.

    Attributes:
        experiment: the Hydra overlay every row composes.
        seeds: run seeds (`train.seed`); each row runs once per seed.
        rows: the table rows.
        eval_prompts: first N prompts of the eval split scored at the end.
        long_factor: the long rollouts are this many times the trained length.
        gt_seeds: ground-truth seeds a rollout may match (nearest wins).
        jobs: training processes at once (CPU cores / 2 is safe for `afd sync`).
        run_timeout_s: per training command.
    """

    experiment: str
    seeds: tuple[int, ...]
    rows: tuple[Row, ...]
    eval_prompts: int = 16
    long_factor: int = 2
    gt_seeds: int = 4
    jobs: int = 1
    run_timeout_s: float = 900.0
    extra: tuple[str, ...] = field(default_factory=tuple)


SIZES: dict[str, Plan] = {
    # 2 seeds x (5 afd run + 1 afd sync) on a shared 2-core machine, two trainings at a time.
    "cpu": Plan("quality_cpu", seeds=(0, 1), rows=default_rows("run", 2), eval_prompts=16, jobs=2),
    # The lent GPU machine: the tiny loops run on its 16 CPU cores (see BENCHMARKS.md), rows in parallel,
    # through the sync oracle (no redis-server there), more steps, seeds and eval prompts.
    "gpu": Plan("quality_gpu", seeds=(0, 1, 2), rows=default_rows("sync", 0), eval_prompts=40, jobs=15,
                run_timeout_s=540.0),
}
