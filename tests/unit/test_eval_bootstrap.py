"""Paired bootstrap over (seed, prompt) cells: hand-checkable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from afd_async.eval.bootstrap import bootstrap_mean, paired_difference


def test_identical_rows_differ_by_exactly_zero() -> None:
    a = np.random.default_rng(1).uniform(size=(3, 40))
    d = paired_difference(a, a.copy())
    assert (d.mean, d.lo, d.hi, d.n_cells) == (0.0, 0.0, 0.0, 120)
    assert not d.excludes_zero()


def test_a_constant_shift_is_recovered_with_a_zero_width_interval() -> None:
    b = np.random.default_rng(2).uniform(size=(3, 40))
    d = paired_difference(b + 0.25, b)
    assert d.mean == pytest.approx(0.25) and d.lo == pytest.approx(0.25) and d.hi == pytest.approx(0.25)
    assert d.excludes_zero()


def test_two_cells_give_the_textbook_interval() -> None:
    # Resampling {0, 1} twice gives means 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4: the 95 % interval is [0, 1].
    m = bootstrap_mean(np.array([0.0, 1.0]))
    assert (m.mean, m.lo, m.hi) == (0.5, 0.0, 1.0)


def test_a_single_seed_row_pairs_with_every_seed_and_nan_cells_are_dropped() -> None:
    base = np.arange(4, dtype=float)  # (P,)
    runs = np.stack([base + 1.0, base + 1.0])  # (S, P)
    runs[1, 2] = math.nan
    d = paired_difference(runs, base)
    assert d.n_cells == 7 and d.mean == d.lo == d.hi == 1.0
    with pytest.raises(ValueError):
        paired_difference(np.zeros((2, 4)), np.zeros(3))


def test_fixed_seed_makes_the_interval_reproducible() -> None:
    x = np.random.default_rng(3).normal(size=50)
    assert bootstrap_mean(x) == bootstrap_mean(x)
    wide = bootstrap_mean(x, level=0.99)
    narrow = bootstrap_mean(x, level=0.5)
    assert wide.lo < narrow.lo < x.mean() < narrow.hi < wide.hi
    assert math.isnan(bootstrap_mean(np.array([math.nan])).mean)
