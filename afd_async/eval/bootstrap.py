"""Paired bootstrap over (seed, prompt) cells: is row A's score really below row B's?

A benchmark row is scored once per (run seed, eval prompt) cell, e.g. `(3, 40)`
values of the primary physics score. Two rows scored on the same prompts share
each prompt's difficulty, so the difference is read cell by cell (paired):
resampling cells with replacement, the *same* cells for both rows, keeps that
pairing and gives a far narrower interval than two independent intervals would.

    a = np.array([[s.physics_score for s in score_clips(...)] for seed in seeds])  # (S, P)
    b = np.array([s.physics_score for s in score_clips(base_rollouts, ...)])        # (P,): one base
    paired_difference(a, b)  # b broadcasts over seeds -> mean, 95 % CI of a - b

Percentile intervals (Efron & Tibshirani 1993, ch. 13) from `n_boot`
resamples drawn by a generator seeded with `seed`, so a table is reproducible.
Cells where either row is NaN are dropped from both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

N_BOOT = 10_000
LEVEL = 0.95
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval.

    Attributes:
        mean: the mean over cells (of a row, or of the paired differences).
        lo: lower end of the interval.
        hi: upper end.
        n_cells: cells used (NaN cells dropped).
    """

    mean: float
    lo: float
    hi: float
    n_cells: int

    def excludes_zero(self) -> bool:
        """The interval lies strictly on one side of 0 (a difference that resampling does not explain)."""
        return self.lo > 0.0 or self.hi < 0.0

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n_cells": float(self.n_cells)}


def bootstrap_mean(values: np.ndarray, *, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = SEED) -> Interval:
    """Mean of `values` (any shape; each entry one (seed, prompt) cell) with its percentile CI."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    return _percentile_interval(x[np.isfinite(x)], n_boot=n_boot, level=level, seed=seed)


def paired_difference(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = SEED
) -> Interval:
    """Mean of `a - b` over paired cells with its percentile CI.

    Args:
        a: scores of row A, `(S, P)` (seeds x prompts) or `(P,)`.
        b: scores of row B on the same prompts; broadcast against `a` (a
            single-seed row such as `base` or the teacher, `(P,)` or `(1, P)`,
            pairs with every seed of A).
        n_boot: resamples.
        level: coverage of the interval.
        seed: of the resampling generator.

    Raises:
        ValueError: the shapes do not broadcast.
    """
    try:
        xa, xb = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    except ValueError as err:
        raise ValueError(f"rows of shape {np.shape(a)} and {np.shape(b)} are not paired cell by cell") from err
    d = (xa - xb).reshape(-1)
    return _percentile_interval(d[np.isfinite(d)], n_boot=n_boot, level=level, seed=seed)


def _percentile_interval(x: np.ndarray, *, n_boot: int, level: float, seed: int) -> Interval:
    if not 0.0 < level < 1.0 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got {level}, {n_boot}")
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(x.mean()), float(lo), float(hi), int(x.size))
