"""Run outputs a person looks at: metric log, plots, a teacher | student sample grid."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from afd_async.video.clip import Clip


# What `metrics.png` shows (each key that appears in the run's records).
PLOT_KEYS = (
    "d_acc", "d_loss", "d_sigma_student", "student_loss", "nft_loss", "adv_std",
    "w_mean", "eval_physics_score", "eval_position_error", "eval_motion_magnitude",
    "d_probe_rho_physics",  # ρ(D, −true error) next to the learning curves (issue 15.2)
)


class MetricLog:
    """Append-only JSON-lines log (one record per step), flushed per write so a crash keeps it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self._f.write(json.dumps({k: (float(v) if isinstance(v, (np.floating, torch.Tensor)) else v) for k, v in record.items()}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_metrics(records: Sequence[Mapping[str, Any]], keys: Iterable[str], path: str | Path, *, x: str = "step") -> Path:
    """One subplot per key that appears in the records; written as PNG."""
    # deferred: matplotlib (~1 s) loads only when a plot is written
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display backend

    keys = [k for k in keys if any(k in r for r in records)]
    cols = 3
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(r[x], r[key]) for r in records if key in r and x in r and r[key] is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None)
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def video_grid(columns: Sequence[torch.Tensor], *, upscale: int = 4, gap: int = 2) -> np.ndarray:
    """Tile videos: `columns[j]` is `(N, 3, F, H, W)` in [-1, 1]; row i shows sample i of every column.

    Returns uint8 `(F, rows·(H·u+gap), cols·(W·u+gap), 3)`.
    """
    n, _, f, h, w = columns[0].shape
    hu, wu = h * upscale + gap, w * upscale + gap
    out = np.full((f, n * hu, len(columns) * wu, 3), 255, np.uint8)
    for j, col in enumerate(columns):
        frames = col.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()
        frames = frames.repeat(upscale, axis=2).repeat(upscale, axis=3)
        for i in range(n):
            out[:, i * hu : i * hu + h * upscale, j * wu : j * wu + w * upscale] = frames[i]
    return out


def write_grid(columns: Sequence[torch.Tensor], fps: float, stem: str | Path, *, upscale: int = 4,
               gif: bool = True) -> list[Path]:
    """Write the grid as `<stem>.mp4` (H.264 via PyAV) and, with `gif`, `<stem>.gif`.

    `gif=False` for real-size clips: PIL's palette quantisation costs seconds per 480x832 frame (minutes for
    one 81-frame grid), where H.264 costs a tenth of that.
    """
    # deferred: PyAV loads only where clips are encoded
    from afd_async.video.codec import encode_mp4

    frames = video_grid(columns, upscale=upscale)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    mp4 = stem.with_name(stem.name + ".mp4")  # not with_suffix: a stem like "run_beta0.5" has a dot of its own
    mp4.write_bytes(encode_mp4(Clip(frames, fps)))
    if not gif:
        return [mp4]
    gif_path = stem.with_name(stem.name + ".gif")
    images = [Image.fromarray(fr) for fr in frames]
    images[0].save(gif_path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return [mp4, gif_path]
