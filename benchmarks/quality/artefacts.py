"""What the benchmark leaves for a person: the tables, learning curves, drift curves, a clip grid."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from afd_async.train.report import video_grid, write_grid

# Law errors shown in the tables (all of them are in the JSON).
KEY_LAWS: tuple[tuple[str, str], ...] = (
    ("accel_error", "accel"), ("bounce_time_error", "bounce s"), ("restitution_error", "restit"),
    ("stopping_distance_error", "stop d"), ("momentum_error", "momentum"), ("period_error", "period"),
)


def _num(x: Any, fmt: str) -> str:
    return fmt.format(x) if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def _table(headers: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return "\n".join([*lines, *("| " + " | ".join(c) + " |" for c in body)])
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    fmt_row = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([fmt_row(headers), *(fmt_row(c) for c in body)])


def format_rows(rows: Sequence[Mapping[str, Any]], *, markdown: bool = False) -> str:
    """`lengths.<h>.rows` as a table: physics score [95% CI], detection, motion and speed ratios, key law errors."""
    headers = ["row", "physics [95% CI]", "<1", "detected", "motion/T", "speed/T", *[h for _, h in KEY_LAWS],
               "pos err", "FVD-rnd"]
    body = []
    for r in rows:
        sc = r["score"]
        ci = f"{_num(sc['mean'], '{:.3f}')} [{_num(sc['ci_low'], '{:.3f}')}, {_num(sc['ci_high'], '{:.3f}')}]"
        laws = r.get("laws") or {}
        body.append([r["name"], ci, "yes" if r.get("below_static") else "no", _num(r.get("detected"), "{:.2f}"),
                     _num(r.get("motion_ratio"), "{:.2f}"), _num(r.get("speed_ratio"), "{:.2f}"),
                     *[_num(laws.get(k), "{:.2f}") for k, _ in KEY_LAWS], _num(r.get("position_error"), "{:.4f}"),
                     _num(r.get("frechet"), "{:.4f}")])
    return _table(headers, body, markdown)


def format_paired(paired: Sequence[Mapping[str, Any]], *, markdown: bool = False) -> str:
    """`lengths.<h>.paired` as a table of `a − b` with its paired 95% CI (negative: `a` scores better)."""
    body = [[f"{p['a']} − {p['b']}", _num(p["diff_mean"], "{:+.3f}"),
             f"[{_num(p['ci_low'], '{:+.3f}')}, {_num(p['ci_high'], '{:+.3f}')}]",
             "yes" if isinstance(p["ci_high"], float) and (p["ci_high"] < 0 or p["ci_low"] > 0) else "no"]
            for p in paired]
    return _table(["pair", "diff", "95% CI", "excludes 0"], body, markdown)


def plot_curves(curves: Mapping[str, Sequence[Sequence[tuple[int, float]]]],
                drift: Mapping[str, Sequence[float]], teacher_drift: Sequence[float], fps: float,
                trained_frames: int, path: Path, *, curve_label: str = "eval position error") -> Path:
    """Left: the run's own eval metric vs student step (mean over seeds); right: position error vs time, long rollouts.

    The left panel is what each run logged (`curve_label`, from its metrics.jsonl), not the benchmark's score.
    """
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
    ax1.set_ylabel(curve_label)
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
