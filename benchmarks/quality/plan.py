"""What each benchmark size runs: rows, seeds, evaluation set; the training deltas live in the Hydra overlay.

A *row* is one way of producing clips of the eval prompts. Trained rows start
from the same pretrained student with the same teacher-query budget,
`(D warm-up steps + steps) x batch` teacher clips, identical for every row
because every row composes the same overlay (`configs/experiment/quality_<size>.yaml`)
and changes only `algo` (and the staleness bound through `afd run`). `base` is
the pretrained student itself (no training). Reference rows are built from
teacher clips of unseen jitter seeds (`afd_async.eval.references`): the
teacher itself (the floor) and four clips with the right pictures but no or
scrambled motion, which a student must beat to claim it learned motion
(issue 15: `static` scores exactly 1 on the primary physics score, the
untrained base ~1.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Optional, Sequence

Mode = Literal["run", "sync", "base", "reference"]

# Table order (issue 15): the floor, the start, the trained rows, then the rows without (correct) motion.
ROW_ORDER = ("teacher", "base", "AFD", "SFT", "GAN", "frozen-D", "oracle",
             "static", "frozen-frame", "shuffled", "reversed")
# Row name -> `afd_async.eval.references` name; `teacher` is the teacher clips themselves.
REFERENCES = {"teacher": "teacher", "static": "static", "frozen-frame": "frozen_frame",
              "shuffled": "shuffled", "reversed": "reversed"}
TRAINED_ALGOS = {"AFD": "afd", "SFT": "sft", "GAN": "gan", "frozen-D": "frozen_d", "oracle": "oracle"}


@dataclass(frozen=True)
class Row:
    """One table row.

    Attributes:
        name: label in the table (one of `ROW_ORDER`).
        algo: `afd | sft | gan | frozen_d | oracle` for a trained row, the
            reference name (`REFERENCES`) for a reference row, None for `base`.
        mode: `run` (async, `afd run`), `sync` (`afd sync`), `base` (untrained)
            or `reference` (built from teacher clips, never trained).
        staleness: k for `afd run` (ignored otherwise).
    """

    name: str
    algo: Optional[str]
    mode: Mode
    staleness: int = 2

    @property
    def trained(self) -> bool:
        return self.mode in ("run", "sync")

    def overrides(self) -> list[str]:
        """The Hydra overrides that make this row's training (empty for rows that are not trained)."""
        if not self.trained:
            return []
        out = [f"algo={self.algo}"]
        if self.mode == "run":
            out.append(f"replay.staleness={self.staleness}")
        return out


def default_rows(main_mode: Literal["run", "sync"], k: int) -> tuple[Row, ...]:
    """Every row of `ROW_ORDER`; trained rows go through `main_mode` at staleness k."""
    rows = []
    for name in ROW_ORDER:
        if name == "base":
            rows.append(Row(name, None, "base"))
        elif name in TRAINED_ALGOS:
            rows.append(Row(name, TRAINED_ALGOS[name], main_mode, k))
        else:
            rows.append(Row(name, REFERENCES[name], "reference"))
    return tuple(rows)


@dataclass(frozen=True)
class Plan:
    """A benchmark size.

    Attributes:
        experiment: the Hydra overlay every trained row composes.
        seeds: run seeds (`train.seed`); each trained row runs once per seed,
            and every row is scored once per seed (rollout noise / teacher
            jitter seeds per seed), giving (seed, prompt) cells.
        rows: the table rows, in `ROW_ORDER`.
        eval_prompts: first N prompts of the eval split scored at the end.
        long_factor: the long rollouts are this many times the trained length.
        gt_seeds: ground-truth seeds a clip may match (nearest wins).
        jobs: training processes at once (CPU cores / 2 is safe for `afd sync`).
        run_timeout_s: per training command.
        extra: Hydra overrides added to every training command (and to the
            config the scorer composes).
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

    def row(self, name: str) -> Optional[Row]:
        return next((r for r in self.rows if r.name == name), None)

    def only(self, names: Sequence[str]) -> "Plan":
        """This plan with only the named trained rows; rows that are not trained (base, teacher, the
        references) are always kept: they cost seconds and every goal check needs base, teacher or static.

        Raises:
            ValueError: a name that is not a row of this plan (a typo would silently drop a row).
        """
        unknown = set(names) - {r.name for r in self.rows}
        if unknown:
            raise ValueError(f"unknown row(s) {sorted(unknown)}; rows of this size: {[r.name for r in self.rows]}")
        return replace(self, rows=tuple(r for r in self.rows if r.name in names or not r.trained))


SIZES: dict[str, Plan] = {
    # Proves the wiring in a few minutes on a 2-core box: 2 steps of each row through `afd sync`, 4 prompts.
    "smoke": Plan("smoke", seeds=(0, 1), rows=default_rows("sync", 0), eval_prompts=4, jobs=2, run_timeout_s=600.0,
                  extra=("train.steps=2", "train.torch_threads=1")),
    # 2 seeds x 5 `afd run` trainings (staleness 2) on a shared 2-core machine, two at a time.
    "cpu": Plan("quality_cpu", seeds=(0, 1), rows=default_rows("run", 2), eval_prompts=16, jobs=2),
    # The lent GPU machine: the tiny loops run on its 16 CPU cores (see BENCHMARKS.md), rows in parallel,
    # through `afd sync` (no redis-server there). 4 seeds x 5 trainings do not fit one 10-minute command:
    # `--train-only --seeds 0 1`, `--train-only --seeds 2 3`, then `--score-only` (quality.py's docstring).
    "gpu": Plan("quality_gpu", seeds=(0, 1, 2, 3), rows=default_rows("sync", 0), eval_prompts=40, jobs=15,
                run_timeout_s=540.0),
}
