"""Resample a teacher clip to the student's frame rate, size and length (DESIGN.md §3).

Teachers render at their own fps/size/length; the discriminator compares a
teacher clip with a student rollout for the same prompt, so both must share
`(num_frames, height, width)` and fps. The recipe, in order:

1. **Temporal: nearest source frame.** Target frame `k` shows time
   `k / fps`; it takes the source frame whose timestamp `i / src_fps` is
   nearest (ties to the later frame). Nearest keeps motion crisp: a linear
   blend of two frames shows a moving object twice at half opacity, a ghost
   the discriminator would learn to spot as a "teacher" feature that the
   student can never reproduce. 24 -> 8 fps thus picks frames 0, 3, 6, ...
2. **Center crop to the target aspect ratio**, so objects keep their shape
   (no anisotropic squash) and stay centred.
3. **Spatial resize, per axis:** area (box) averaging when shrinking — each
   output pixel is the exact mean of the input area it covers, which is the
   antialiasing filter for integer and fractional factors alike — and bilinear
   (half-pixel centres) when enlarging, where area averaging would be nearest
   neighbour.

If the source is shorter than `num_frames / fps` seconds, the last frame is
held and the number of held frames is reported (`Resampled.padded_frames`);
below `min_source_fraction` of the requested duration, `ClipTooShortError`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from afd_async.video.clip import Clip

__all__ = ["ClipTooShortError", "Resampled", "resample_clip", "resample_with_report", "source_indices"]

logger = logging.getLogger(__name__)


class ClipTooShortError(ValueError):
    """The source covers less of the requested duration than the caller accepts."""


@dataclass(frozen=True)
class Resampled:
    """A resampled clip and what it cost.

    Attributes:
        clip: the resampled clip, `(num_frames, height, width, 3)` at `fps`.
        source_indices: the source frame used for each output frame.
        padded_frames: output frames that hold the last source frame because
            the source ended before their time (0 when the source was long enough).
        source_fraction: source duration / requested duration, capped at 1.
    """

    clip: Clip
    source_indices: tuple[int, ...]
    padded_frames: int
    source_fraction: float


def source_indices(src_frames: int, src_fps: float, fps: float, num_frames: int) -> tuple[list[int], int]:
    """Nearest source frame for each target time, and how many fell past the end.

    Returns:
        `(indices, padded)`: indices clamped to `src_frames - 1`; `padded`
        counts those that were clamped.
    """
    ratio = src_fps / fps
    raw = [int(math.floor(k * ratio + 0.5 + 1e-9)) for k in range(num_frames)]  # epsilon: 1/3*3 rounding
    last = src_frames - 1
    return [min(i, last) for i in raw], sum(1 for i in raw if i > last)


def _crop_box(h: int, w: int, height: int, width: int) -> tuple[int, int, int, int]:
    """`(top, left, crop_h, crop_w)` of the largest centred box with aspect `width / height`."""
    if w * height > h * width:  # source is wider: trim the sides
        cw, ch = max(1, round(h * width / height)), h
    else:
        cw, ch = w, max(1, round(w * height / width))
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _axis_weights(n_in: int, n_out: int) -> np.ndarray:
    """`(n_out, n_in)` resampling matrix: area average to shrink, bilinear to enlarge."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    if n_out <= n_in:  # box filter: overlap of [j*s, (j+1)*s) with each input pixel [i, i+1)
        for j in range(n_out):
            a, b = j * scale, (j + 1) * scale
            for i in range(int(math.floor(a)), min(n_in, int(math.ceil(b)))):
                m[j, i] = min(b, i + 1) - max(a, i)
            m[j] /= m[j].sum()
    else:  # bilinear with half-pixel centres (align_corners=False), edges clamped
        for j in range(n_out):
            x = min(max((j + 0.5) * scale - 0.5, 0.0), n_in - 1.0)
            i0 = int(math.floor(x))
            i1 = min(i0 + 1, n_in - 1)
            m[j, i0] += 1.0 - (x - i0)
            m[j, i1] += x - i0
    return m.astype(np.float32)


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Center-crop to the target aspect, then resize `(T, H, W, 3)` uint8 frames.

    Returns:
        `(T, height, width, 3)` uint8.
    """
    t, h, w, _ = frames.shape
    top, left, ch, cw = _crop_box(h, w, height, width)
    x = frames[:, top : top + ch, left : left + cw]
    if (ch, cw) == (height, width):
        return np.ascontiguousarray(x)
    x = x.astype(np.float32)
    if ch != height:
        x = np.einsum("oh,thwc->towc", _axis_weights(ch, height), x, optimize=True)
    if cw != width:
        x = np.einsum("ow,thwc->thoc", _axis_weights(cw, width), x, optimize=True)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def resample_with_report(
    clip: Clip,
    *,
    fps: float,
    height: int,
    width: int,
    num_frames: int,
    min_source_fraction: float = 0.0,
) -> Resampled:
    """Resample `clip` to `(num_frames, height, width)` at `fps` and report padding.

    Args:
        clip: the source clip, any size, fps and length.
        fps: target frame rate (> 0).
        height: target height (>= 1).
        width: target width (>= 1).
        num_frames: target length in frames (>= 1).
        min_source_fraction: raise if the source lasts less than this fraction
            of `num_frames / fps` (0 accepts anything, holding the last frame).

    Raises:
        ClipTooShortError: the source is shorter than `min_source_fraction` allows.
    """
    if fps <= 0 or height < 1 or width < 1 or num_frames < 1:
        raise ValueError(f"bad target fps={fps}, size={height}x{width}, num_frames={num_frames}")
    if not 0.0 <= min_source_fraction <= 1.0:
        raise ValueError(f"min_source_fraction must be in [0, 1], got {min_source_fraction}")
    fraction = min(1.0, clip.duration_s / (num_frames / fps))
    if fraction + 1e-9 < min_source_fraction:
        raise ClipTooShortError(
            f"source lasts {clip.duration_s:.3f}s, {fraction:.0%} of the {num_frames / fps:.3f}s requested "
            f"(minimum {min_source_fraction:.0%})"
        )
    idx, padded = source_indices(clip.num_frames, clip.fps, fps, num_frames)
    if padded:
        logger.debug("resample: held the last frame for %d of %d frames", padded, num_frames)
    frames = resize_frames(clip.frames[idx], height, width)
    return Resampled(Clip(frames=frames, fps=float(fps)), tuple(idx), padded, fraction)


def resample_clip(
    clip: Clip,
    *,
    fps: float,
    height: int,
    width: int,
    num_frames: int,
    min_source_fraction: float = 0.0,
) -> Clip:
    """`resample_with_report(...).clip`: for callers that only set a minimum length.

    Use `resample_with_report` to learn how many frames were held (padding).
    """
    return resample_with_report(
        clip, fps=fps, height=height, width=width, num_frames=num_frames, min_source_fraction=min_source_fraction
    ).clip
