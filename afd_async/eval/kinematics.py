"""Estimators of physical quantities from sampled 1-D tracks (numpy only).

These read what a clip *shows* (a student's or the teacher's), so they make no
use of ground truth except where an argument says so. Each is exact on the
noise-free kinematics it models and degrades gracefully when fewer than the
needed samples exist (NaN, never an exception): at the student's 8 fps a drop
from the top lasts only ~3 frames, which is why the estimators pool segments
and fit rather than difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def fit_gravity(t: np.ndarray, y: np.ndarray, boundaries: Sequence[float]) -> float:
    """Common acceleration of piecewise-ballistic vertical motion.

    Fits `y = a_k + b_k t + g t^2 / 2` by least squares, one (a_k, b_k) per
    segment between consecutive `boundaries` (floor contacts) and one shared g.
    Segments with fewer than 3 finite samples are left out (they carry no
    curvature).

    Args:
        t: `(T,)` sample times (s).
        y: `(T,)` vertical positions (frame units, y down); NaN = missing.
        boundaries: increasing segment edges, e.g. `[0, c1, c2, rest_time]`;
            samples outside `[boundaries[0], boundaries[-1])` are ignored.

    Returns:
        g in frame heights / s^2 (positive = downward), or NaN if not estimable.
    """
    t, y = np.asarray(t, np.float64), np.asarray(y, np.float64)
    cols: list[np.ndarray] = []
    rows_t: list[np.ndarray] = []
    rows_y: list[np.ndarray] = []
    segs = 0
    for lo, hi in zip(boundaries[:-1], boundaries[1:]):
        m = (t >= lo) & (t < hi) & np.isfinite(y)
        if m.sum() < 3:
            continue
        rows_t.append(t[m])
        rows_y.append(y[m])
        segs += 1
    if not segs:
        return math.nan
    n = sum(r.size for r in rows_t)
    a = np.zeros((n, 2 * segs + 1))
    row = 0
    for k, tt in enumerate(rows_t):
        a[row : row + tt.size, 2 * k] = 1.0
        a[row : row + tt.size, 2 * k + 1] = tt
        a[row : row + tt.size, -1] = tt * tt / 2.0
        row += tt.size
    coef, *_ = np.linalg.lstsq(a, np.concatenate(rows_y), rcond=None)
    return float(coef[-1])


def floor_contacts(t: np.ndarray, y: np.ndarray, *, prominence: float = 0.03, rest_tol: float = 0.02) -> tuple[list[float], float | None]:
    """Rebound times and the arrival time at rest, from a vertical track (y down).

    A rebound is a local maximum of y from which the object rises again by at
    least `prominence`; its time is the vertex of the parabola through the
    three samples around it (clipped to +- half a frame). Arrival at rest is the
    first sample from which y stays within `rest_tol` of the final level to the
    end of the clip; its time is where the incoming motion, extrapolated as a parabola, reaches that level.

    Returns:
        (rebound times, rest arrival time or None if the clip never settles).
    """
    t, y = np.asarray(t, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    rebounds: list[float] = []
    if y.size < 3:
        return rebounds, None
    dt = float(np.median(np.diff(t)))
    for i in range(1, y.size - 1):
        if not (y[i] >= y[i - 1] and y[i] > y[i + 1]):
            continue
        if y[i] - y[i + 1 :].min() < prominence or y[i] - y[: i].min() < prominence:
            continue
        rebounds.append(float(t[i] + dt * _vertex_offset(y[i - 1], y[i], y[i + 1])))
    final = float(np.median(y[-2:]))
    settled = np.abs(y - final) <= rest_tol
    rest = None
    if settled[-1] and not settled.all():
        first = int(y.size - np.argmin(settled[::-1]))  # first index of the final settled run
        if first > 0:
            rest = _arrival(t[max(0, first - 3) : first], y[max(0, first - 3) : first], final, float(t[first]))
    return rebounds, rest


def _arrival(t: np.ndarray, y: np.ndarray, level: float, t_next: float) -> float:
    """When the incoming motion (a parabola through up to three samples) reaches `level`, within [t[-1], t_next]."""
    lo = float(t[-1])
    if t.size >= 2:
        coef = np.polyfit(t - lo, y, min(2, t.size - 1))
        roots = np.roots(coef - np.r_[np.zeros(coef.size - 1), level])
        real = [float(r.real) for r in roots if abs(r.imag) < 1e-9 and 0.0 <= r.real <= t_next - lo]
        if real:
            return lo + min(real)
    return (lo + t_next) / 2.0


def _vertex_offset(a: float, b: float, c: float) -> float:
    """Offset (in samples, within [-0.5, 0.5]) of the extremum of the parabola through (-1, a), (0, b), (1, c)."""
    den = a - 2.0 * b + c
    if den == 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


def restitution_from_apexes(t: np.ndarray, y: np.ndarray, rebounds: Sequence[float], y_floor: float, *,
                            max_bounces: int | None = None) -> float:
    """Coefficient of restitution from successive apex heights: e = sqrt(h_{k+1} / h_k).

    h_0 is the drop height from the first sample (a falling object starts at
    rest), h_k (k >= 1) the height of the highest point between rebound k and
    the next contact; `y_floor` is the centre's height at contact.

    Returns:
        The mean over available ratios, 0 if the object never rebounds, NaN if
        the drop height is not positive (nothing to measure).
    """
    t, y = np.asarray(t, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    if y.size == 0:
        return math.nan
    heights = [y_floor - float(y[0])]
    if heights[0] <= 1e-3:
        return math.nan
    rebounds = list(rebounds)[: max_bounces if max_bounces is not None else None]
    if not rebounds:
        return 0.0
    edges = [*rebounds, float(t[-1]) + 1.0]
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (t > lo) & (t < hi)
        if not m.any():
            break
        heights.append(max(y_floor - float(y[m].min()), 0.0))
    ratios = [math.sqrt(h1 / h0) for h0, h1 in zip(heights[:-1], heights[1:]) if h0 > 1e-3]
    return float(np.mean(ratios)) if ratios else math.nan


def velocity_at(t: np.ndarray, x: np.ndarray, lo: float, hi: float, at: float) -> float:
    """Velocity at time `at` from the finite samples with lo <= t <= hi (NaN if fewer than 2).

    Three or more samples: derivative at `at` of a least-squares parabola
    (constant acceleration, e.g. friction), so the estimate is not biased by
    the deceleration inside the window; two samples: their slope.
    """
    t, x = np.asarray(t, np.float64), np.asarray(x, np.float64)
    m = (t >= lo) & (t <= hi) & np.isfinite(x)
    if m.sum() < 2:
        return math.nan
    tt = t[m] - at
    if m.sum() == 2:
        return float((x[m][1] - x[m][0]) / (tt[1] - tt[0]))
    return float(np.polyfit(tt, x[m], 2)[1])


def oscillation_period(t: np.ndarray, x: np.ndarray, *, min_period: float = 0.4, max_period: float = 8.0,
                       min_amplitude: float = 0.02, num: int = 400) -> float:
    """Period of the best-fitting sinusoid `x = A cos(w t) + B sin(w t) + c` (grid search over w).

    Works with less than one period visible, where zero crossings are too few.
    A pendulum's x is not exactly sinusoidal at large amplitude, but its period
    is that of the fit.

    Returns:
        Period in seconds, or NaN if fewer than 4 samples or the fitted
        amplitude is below `min_amplitude` (the object does not swing).
    """
    t, x = np.asarray(t, np.float64), np.asarray(x, np.float64)
    ok = np.isfinite(x)
    t, x = t[ok], x[ok]
    if t.size < 4:
        return math.nan
    best = (math.inf, math.nan, 0.0)
    for period in np.geomspace(min_period, max_period, num):
        w = 2.0 * math.pi / period
        a = np.stack([np.cos(w * t), np.sin(w * t), np.ones_like(t)], axis=1)
        coef, *_ = np.linalg.lstsq(a, x, rcond=None)
        res = float(((a @ coef - x) ** 2).sum())
        if res < best[0]:
            best = (res, float(period), float(math.hypot(coef[0], coef[1])))
    return best[1] if best[2] >= min_amplitude else math.nan
