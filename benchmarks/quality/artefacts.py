"""What the benchmark leaves for a person: the table, learning curves, drift curves, a clip grid."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from afd_async.train.report import video_grid, write_grid

# (key, header, format) of the printed table, per horizon.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("position_error", "pos err", "{:.4f}"),
    ("position_error_late", "late", "{:.4f}"),
    ("accel_error", "accel", "{:.2f}"),
    ("bounce_time_error", "bounce s", "{:.3f}"),
    ("restitution_error", "restit", "{:.2f}"),
    ("stopping_distance_error", "stop d", "{:.2f}"),
    ("momentum_error", "momentum", "{:.2f}"),
    ("period_error", "period", "{:.2f}"),
    ("motion_ratio", "motion/T", "{:.2f}"),
    ("flicker", "flicker", "{:.4f}"),
    ("frechet", "FVD-rnd", "{:.4f}"),
)


def format_table(rows: Sequence[tuple[str, Mapping[str, tuple[float, float]]]], *, markdown: bool = False) -> str:
    """Rows of `(name, {key: (mean, sd)})` as a fixed-width (or Markdown) table of `mean ± sd`."""
    headers = ["row", *[h for _, h, _ in COLUMNS]]
    body = []
    for name, stats in rows:
        cells = [name]
        for key, _, fmt in COLUMNS:
            if key not in stats or not math.isfinite(stats[key][0]):
                cells.append("–")
                continue
            m, sd = stats[key]
            cells.append(f"{fmt.format(m)} ± {fmt.format(sd)}" if sd else fmt.format(m))
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return "\n".join([*lines, *("| " + " | ".join(c) + " |" for c in body)])
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    fmt_row = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([fmt_row(headers), *(fmt_row(c) for c in body)])


def plot_curves(curves: Mapping[str, Sequence[Sequence[tuple[int, float]]]],
                drift: Mapping[str, Sequence[float]], teacher_drift: Sequence[float], fps: float,
                trained_frames: int, path: Path) -> Path:
    """Left: eval position error vs student step (mean over seeds); right: error vs time on the long rollouts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, runs in curves.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        steps = sorted({s for r in runs for s, _ in r})
        ys = [np.mean([dict(r)[s] for r in runs if s in dict(r)]) for s in steps]
        ax1.plot(steps, ys, marker=".", label=name)
    ax1.set_xlabel("student step")
    ax1.set_ylabel("eval position error (run's own evaluator)")
    ax1.set_title("learning curves (mean over seeds)", fontsize=10)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    for name, curve in drift.items():
        t = np.arange(len(curve)) / fps
        ax2.plot(t, curve, label=name)
    ax2.plot(np.arange(len(teacher_drift)) / fps, teacher_drift, "k--", label="teacher (floor)")
    ax2.axvline(trained_frames / fps, color="grey", lw=0.8)
    ax2.text(trained_frames / fps, ax2.get_ylim()[1] * 0.95, " trained length", fontsize=7, va="top")
    ax2.set_xlabel("seconds into the rollout")
    ax2.set_ylabel("position error")
    ax2.set_title("drift on long rollouts (mean over prompts, seeds)", fontsize=10)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_clip_grid(columns: Sequence[torch.Tensor], names: Sequence[str], fps: float, stem: Path,
                    *, frames_in_strip: int = 8) -> list[Path]:
    """`<stem>.mp4` / `.gif` (columns side by side, one row per prompt) and `<stem>.png` (a frame strip).

    The strip shows `frames_in_strip` evenly spaced frames of the whole grid, left to right, under one
    header naming the columns and the frame times.
    """
    from PIL import Image, ImageDraw

    paths = write_grid(columns, fps, stem, upscale=3)
    grid = video_grid(columns, upscale=3)  # (F, H, W, 3)
    picks = np.linspace(0, grid.shape[0] - 1, min(frames_in_strip, grid.shape[0])).round().astype(int)
    tiles = [np.pad(grid[i], ((0, 0), (0, 8), (0, 0)), constant_values=255) for i in picks]
    strip = np.pad(np.concatenate(tiles, axis=1), ((28, 0), (0, 0), (0, 0)), constant_values=255)
    img = Image.fromarray(strip)
    draw = ImageDraw.Draw(img)
    draw.text((2, 1), "columns in each tile: " + " | ".join(names), fill=(0, 0, 0))
    for j, i in enumerate(picks):
        draw.text((j * (grid.shape[2] + 8) + 2, 14), f"t = {i / fps:.2f} s", fill=(0, 0, 0))
    png = stem.with_name(stem.name + ".png")
    img.save(png, optimize=True)
    return [*paths, png]


def summarise(per_seed: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, tuple[float, float]]:
    """`{key: (mean, sd)}` over seeds of one row's horizon metrics."""
    from scoring import spread

    return {k: spread([m.get(k, float("nan")) for m in per_seed]) for k in keys}
