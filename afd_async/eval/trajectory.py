"""Robust object trajectories from RGB clips: one centroid per object and frame.

`extract_trajectories` (in `afd_async.eval.physics`) already makes each frame's
centroid robust to blur and dimming (coverage-weighted colour unmixing). A weak
student adds two *temporal* failure modes it cannot see frame by frame:

- flicker: the object fades for a frame or two and is not detected (a gap);
- a spurious blob of the object's colour elsewhere for one frame (a jump).

`robust_trajectories` repairs both with standard, parameter-light filters: a
Hampel filter (running median +- a MAD-scaled band) replaces isolated jumps by
the local median, and gaps of at most `max_gap` frames are filled by linear
interpolation. Longer gaps stay missing: the object really is not there, and
the position metrics charge `MISSING_PENALTY` for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from afd_async.eval.physics import extract_trajectories

MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian times this is its standard deviation


@dataclass(frozen=True)
class Trajectories:
    """Cleaned object tracks of one clip.

    Attributes:
        positions: `(K, T, 2)` centres, normalised (x right, y down); NaN where missing.
        raw: `(K, T, 2)` centroids before temporal cleaning.
        times: `(T,)` frame times in seconds (frame `i` at `i / fps`).
        fps: frame rate of the clip.
    """

    positions: np.ndarray
    raw: np.ndarray
    times: np.ndarray
    fps: float

    @property
    def found(self) -> np.ndarray:
        """`(K, T)` bool: a position is available (detected or safely filled)."""
        return ~np.isnan(self.positions[..., 0])

    @property
    def num_objects(self) -> int:
        return int(self.positions.shape[0])

    def speed(self) -> np.ndarray:
        """`(K,)` mean path length per second over consecutive found frames (0 if none)."""
        out = np.zeros(self.num_objects)
        for k in range(self.num_objects):
            step = np.linalg.norm(np.diff(self.positions[k], axis=0), axis=-1) * self.fps
            step = step[np.isfinite(step)]
            out[k] = float(step.mean()) if step.size else 0.0
        return out


def hampel(x: np.ndarray, *, half_window: int = 2, n_sigmas: float = 3.0, min_band: float = 0.1) -> np.ndarray:
    """Replace outliers of a 1-D series (NaN allowed) by the median of their window.

    A sample is an outlier when it is further than `max(n_sigmas * sigma, min_band)`
    from the median of the `2 * half_window + 1` samples around it, sigma being the
    window's MAD scaled to a standard deviation. `min_band` (frame units) keeps
    genuine fast motion (a bounce's V, ~0.4 of the frame per frame at 8 fps) from
    being flattened while still catching a blob that jumps across the frame.
    """
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    for i in range(half_window, x.size - half_window):  # full windows only: at an edge fast motion looks like a jump
        if np.isnan(x[i]):
            continue
        w = x[i - half_window : i + half_window + 1]
        w = w[~np.isnan(w)]
        if w.size < 3:
            continue
        med = float(np.median(w))
        sigma = MAD_TO_SIGMA * float(np.median(np.abs(w - med)))
        if abs(x[i] - med) > max(n_sigmas * sigma, min_band):
            out[i] = med
    return out


def fill_gaps(x: np.ndarray, *, max_gap: int = 2) -> np.ndarray:
    """Linearly interpolate NaN runs of at most `max_gap` samples (edges: nearest value)."""
    x = np.asarray(x, dtype=np.float64).copy()
    ok = ~np.isnan(x)
    if ok.sum() == 0 or ok.all():
        return x
    idx = np.arange(x.size)
    i = 0
    while i < x.size:
        if ok[i]:
            i += 1
            continue
        j = i
        while j < x.size and not ok[j]:
            j += 1
        if j - i <= max_gap and (i > 0 or j < x.size):
            x[i:j] = np.interp(idx[i:j], idx[ok], x[ok])
        i = j
    return x


def robust_trajectories(
    frames: np.ndarray,
    colors: Sequence[tuple[int, int, int]],
    fps: float,
    *,
    max_gap: int = 2,
    min_band: float = 0.1,
) -> Trajectories:
    """Per-frame centroids of each object colour, cleaned over time.

    Args:
        frames: `uint8` `(T, H, W, 3)` RGB.
        colors: the K object colours (`GroundTruth.colors`).
        fps: the clip's frame rate.
        max_gap: longest run of missed frames that is interpolated.
        min_band: smallest jump (frame units) the Hampel filter treats as an outlier.
    """
    raw = extract_trajectories(frames, colors)
    pos = raw.copy()
    for k in range(raw.shape[0]):
        found = ~np.isnan(raw[k, :, 0])
        for c in range(2):
            series = hampel(raw[k, :, c], min_band=min_band)
            series[~found] = np.nan
            pos[k, :, c] = fill_gaps(series, max_gap=max_gap)
    times = np.arange(raw.shape[1], dtype=np.float64) / fps
    return Trajectories(positions=pos, raw=raw, times=times, fps=float(fps))
