"""Draw ground truth as anti-aliased RGB frames, vectorised over all frames at once.

Anti-aliasing is analytic coverage: a pixel's alpha is the fraction of its
area inside the shape, computed from the signed distance of the pixel centre
to a disc or rod edge (clip(d + 1/2, 0, 1), exact for straight edges) and
exactly per axis for axis-aligned squares. Compositing is "over" in float32.
A 48-frame 96x96 clip renders in a few milliseconds.

The world is the unit square mapped onto the frame, so a non-square frame
stretches it (discs become ellipses), keeping normalised positions exact.
Frame `i` shows the simulation at time `i / fps`.
"""

from __future__ import annotations

import numpy as np

from afd_async.physics.grammar import parse_prompt
from afd_async.physics.scene import BACKGROUND_RGB, GROUND_RGB, PIVOT_RADIUS, ROD_HALF_WIDTH, ROD_RGB
from afd_async.physics.dynamics import simulate
from afd_async.physics.truth import GroundTruth, PhysicsOverrides
from afd_async.video.clip import Clip


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """`(T,)` times in seconds shown by frames `0..T-1` of a clip at `fps`."""
    return np.arange(num_frames, dtype=np.float64) / fps


def num_frames_for(seconds: float, fps: float) -> int:
    """Frames in a clip of `seconds` at `fps` (at least one)."""
    return max(1, int(round(seconds * fps)))


def render(gt: GroundTruth, *, height: int, width: int, fps: float, seconds: float | None = None) -> Clip:
    """Render `gt` at any resolution and frame rate.

    Args:
        gt: from `simulate`.
        height: frame height in pixels (>= 8).
        width: frame width in pixels (>= 8).
        fps: frames per second (> 0).
        seconds: clip length; None uses the simulated duration (must not exceed it).

    Returns:
        A `Clip` with `round(seconds * fps)` frames.
    """
    if height < 8 or width < 8 or not fps > 0:
        raise ValueError(f"render needs height, width >= 8 and fps > 0, got {height}x{width} @ {fps}")
    seconds = gt.seconds if seconds is None else seconds
    if not 0 < seconds <= gt.seconds + 1e-9:
        raise ValueError(f"seconds must be in (0, {gt.seconds}] (the simulated duration), got {seconds}")
    times = frame_times(num_frames_for(seconds, fps), fps)
    centres = gt.positions_at(times)  # (K, T, 2)
    img = np.empty((times.size, height, width, 3), dtype=np.float32)
    img[:] = _backdrop(gt.floor_y, height, width)
    if gt.pivot is not None:
        # The rod only ever covers the box spanned by the pivot and the bob's path.
        xs = np.concatenate([[gt.pivot[0]], centres[0, :, 0]])
        ys = np.concatenate([[gt.pivot[1]], centres[0, :, 1]])
        c0, c1 = max(0, int(xs.min() * width) - 2), min(width, int(xs.max() * width) + 3)
        r0, r1 = max(0, int(ys.min() * height) - 2), min(height, int(ys.max() * height) + 3)
        px = (np.arange(c0, c1, dtype=np.float32) + 0.5) / width  # pixel centres, normalised
        py = (np.arange(r0, r1, dtype=np.float32) + 0.5) / height
        _draw_sparse(img[:, r0:r1, c0:c1], _rod(px, py, gt.pivot, centres[0], width, height), ROD_RGB)
        pivot = np.broadcast_to(np.asarray(gt.pivot, np.float64), (times.size, 2))
        _draw_shape(img, "ball", pivot, PIVOT_RADIUS, ROD_RGB)
    for k, obj in enumerate(gt.objects):
        _draw_shape(img, obj.kind, centres[k], obj.radius, obj.rgb)
    return Clip(frames=(img + 0.5).astype(np.uint8), fps=float(fps))


def render_prompt(
    prompt: str,
    *,
    seed: int,
    height: int = 96,
    width: int = 96,
    fps: float = 24.0,
    seconds: float = 2.0,
    physics: PhysicsOverrides | None = None,
) -> tuple[Clip, GroundTruth]:
    """Parse, simulate and render one prompt: the local teacher's whole job.

    Raises:
        PromptError: the prompt is outside the grammar.
    """
    gt = simulate(parse_prompt(prompt), seed=seed, seconds=seconds, physics=physics)
    return render(gt, height=height, width=width, fps=fps, seconds=seconds), gt


def _backdrop(floor_y: float | None, height: int, width: int) -> np.ndarray:
    """`(H, W, 3)` background, with the ground below `floor_y` when there is a floor."""
    back = np.empty((height, width, 3), dtype=np.float32)
    back[:] = np.asarray(BACKGROUND_RGB, dtype=np.float32)
    if floor_y is not None:
        py = (np.arange(height, dtype=np.float32) + 0.5) / height
        cover = _coverage_1d(py, floor_y, 2.0, height)  # from floor_y down past the frame
        back += cover[:, None, None] * (np.asarray(GROUND_RGB, np.float32) - back)
    return back


def _draw_sparse(img: np.ndarray, alpha: np.ndarray, rgb: tuple[int, int, int]) -> None:
    """Composite `rgb` over `img` `(T, H, W, 3)` where coverage `alpha` `(T, H, W)` is non-zero."""
    idx = np.nonzero(alpha)
    a = alpha[idx][:, None]
    img[idx] += a * (np.asarray(rgb, dtype=np.float32) - img[idx])


def _draw_shape(img: np.ndarray, kind: str, centres: np.ndarray, r: float, rgb: tuple[int, int, int]) -> None:
    """Composite a disc (or square) per frame, computing coverage only in a moving window.

    The window is a fixed-size box around each frame's shape, shifted (never
    clipped) to stay inside the frame, so its pixel indices are distinct and a
    fancy-indexed update is exact.
    """
    t, h, w = img.shape[:3]
    sy, sx = min(h, int(np.ceil(2 * r * h)) + 3), min(w, int(np.ceil(2 * r * w)) + 3)
    y0 = np.clip(np.floor(centres[:, 1] * h - sy / 2).astype(np.int64), 0, h - sy)  # (T,)
    x0 = np.clip(np.floor(centres[:, 0] * w - sx / 2).astype(np.int64), 0, w - sx)
    yi = y0[:, None] + np.arange(sy)[None]  # (T, sy)
    xi = x0[:, None] + np.arange(sx)[None]  # (T, sx)
    py = ((yi + 0.5) / h).astype(np.float32)
    px = ((xi + 0.5) / w).astype(np.float32)
    c = centres.astype(np.float32)
    if kind == "square":
        cov_y = _coverage_1d(py, c[:, 1:2] - r, c[:, 1:2] + r, h)  # (T, sy)
        cov_x = _coverage_1d(px, c[:, 0:1] - r, c[:, 0:1] + r, w)
        alpha = cov_y[:, :, None] * cov_x[:, None, :]
    else:
        dx = (px[:, None, :] - c[:, 0, None, None]) * w  # pixels, (T, 1, sx)
        dy = (py[:, :, None] - c[:, 1, None, None]) * h  # (T, sy, 1)
        rx, ry = r * w, r * h
        if rx == ry:
            signed = rx - np.sqrt(dx * dx + dy * dy)
        else:  # ellipse: scaled distance, exact along the short axis
            signed = (1.0 - np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)) * min(rx, ry)
        alpha = np.clip(signed + 0.5, 0.0, 1.0)
    ti = np.arange(t)[:, None, None]
    window = img[ti, yi[:, :, None], xi[:, None, :]]  # (T, sy, sx, 3)
    window += alpha[..., None].astype(np.float32) * (np.asarray(rgb, dtype=np.float32) - window)
    img[ti, yi[:, :, None], xi[:, None, :]] = window


def _coverage_1d(coord: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray, pixels: int) -> np.ndarray:
    """Exact fraction of each pixel (centre `coord`, width 1/pixels) inside [lo, hi] (broadcasts)."""
    half = 0.5 / pixels
    return (np.clip(np.minimum(coord + half, hi) - np.maximum(coord - half, lo), 0.0, None) * pixels).astype(
        np.float32
    )


def _rod(px: np.ndarray, py: np.ndarray, pivot: tuple[float, float], bob: np.ndarray, w: int, h: int) -> np.ndarray:
    """Coverage `(T, H, W)` of the segments pivot -> bob, `ROD_HALF_WIDTH` thick (pixel metric)."""
    ax, ay = pivot[0] * w, pivot[1] * h
    bx, by = bob[:, 0, None, None] * w, bob[:, 1, None, None] * h  # (T, 1, 1)
    qx, qy = px[None, None, :] * w - ax, py[None, :, None] * h - ay
    sx, sy = bx - ax, by - ay
    t = np.clip((qx * sx + qy * sy) / np.maximum(sx * sx + sy * sy, 1e-9), 0.0, 1.0)
    dist = np.sqrt((qx - t * sx) ** 2 + (qy - t * sy) ** 2)
    half = ROD_HALF_WIDTH * min(w, h)
    return np.clip(half - dist + 0.5, 0.0, 1.0).astype(np.float32)
