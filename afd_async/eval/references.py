"""Reference clips that a physics score must rank *below* the teacher: right pictures, wrong (or no) motion.

Each builder takes what the benchmark already has, teacher clips `(N, 3, F, H, W)`
in [-1, 1] (the format `scorecard` takes) or the prompts' ground truths, and
returns clips of the same shape, so a reference row goes through exactly the
scorer a student row does:

- `static`: discs of each object's colour and radius held still at the true
  first-frame positions (the renderer drawing a frozen state);
- `frozen_frame`: the teacher's first frame repeated;
- `shuffled`: the teacher's frames in a seeded random order (never the identity);
- `reversed_frames`: the teacher's clip played backwards.

The first two show no motion at all and score exactly 1 on the primary physics
score (`afd_async.eval.kinematic_score`); the last two show the right amount of
motion in the wrong order. Position error ranks all four *better* than an
untrained student (issue 15), which is why they are rows of the benchmark.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from afd_async.physics.raster import render
from afd_async.physics.truth import GroundTruth

ReferenceName = Literal["static", "frozen_frame", "shuffled", "reversed"]
REFERENCE_NAMES: tuple[ReferenceName, ...] = ("static", "frozen_frame", "shuffled", "reversed")


def frozen_truth(gt: GroundTruth) -> GroundTruth:
    """`gt` with every object held at its first position for the whole simulated time (zero velocity)."""
    n = gt.positions.shape[1]
    return dataclasses.replace(
        gt,
        positions=np.repeat(gt.positions[:, :1], n, axis=1),
        velocities=np.zeros_like(gt.velocities),
        events=(),
    )


def static_clip(gt: GroundTruth, *, num_frames: int, fps: float, height: int, width: int) -> torch.Tensor:
    """`(3, F, H, W)` in [-1, 1]: the scene of `gt` drawn by the renderer with every object frozen at frame 0.

    Drawn directly at the clip's size (the renderer's coverage anti-aliasing is
    exact at any size), with the same backdrop, floor and pendulum rod as the teacher.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    seconds = num_frames / fps
    if seconds > gt.seconds + 1e-9:
        raise ValueError(f"{num_frames} frames at {fps} fps last longer than the simulated {gt.seconds} s")
    clip = render(frozen_truth(gt), height=height, width=width, fps=fps, seconds=seconds)
    frames = torch.from_numpy(np.ascontiguousarray(clip.frames[:num_frames]))  # (F, H, W, 3) uint8
    return frames.permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def static(truths: Sequence[GroundTruth], *, num_frames: int, fps: float, height: int, width: int) -> torch.Tensor:
    """`(N, 3, F, H, W)`: `static_clip` of each prompt's truth (pass one truth per prompt, e.g. seed 0)."""
    return torch.stack([static_clip(gt, num_frames=num_frames, fps=fps, height=height, width=width) for gt in truths])


def frozen_frame(videos: torch.Tensor) -> torch.Tensor:
    """`(N, 3, F, H, W)`: frame 0 of each clip repeated F times."""
    _check(videos)
    return videos[:, :, :1].expand_as(videos).contiguous()


def shuffled(videos: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """`(N, 3, F, H, W)`: each clip's frames in its own random order, drawn from a generator seeded with `seed`.

    Every permutation differs from the identity (redrawn if not), so the clip
    really is out of order. Needs F >= 2.
    """
    _check(videos)
    f = videos.shape[2]
    if f < 2:
        raise ValueError("shuffled needs at least 2 frames (one frame has no other order)")
    g = torch.Generator().manual_seed(seed)
    identity = torch.arange(f)
    out = []
    for clip in videos:
        perm = identity
        while torch.equal(perm, identity):
            perm = torch.randperm(f, generator=g)
        out.append(clip[:, perm])
    return torch.stack(out)


def reversed_frames(videos: torch.Tensor) -> torch.Tensor:
    """`(N, 3, F, H, W)`: each clip played backwards."""
    _check(videos)
    return videos.flip(2)


def references(
    teacher: torch.Tensor,
    truths: Sequence[Sequence[GroundTruth]] | Sequence[GroundTruth],
    *,
    fps: float,
    seed: int = 0,
    names: Sequence[ReferenceName] = REFERENCE_NAMES,
) -> dict[ReferenceName, torch.Tensor]:
    """Every reference row for one horizon, each `(N, 3, F, H, W)` like `teacher`.

    Args:
        teacher: teacher clips of the N prompts, in [-1, 1].
        truths: per prompt, its ground truths (the first is used for `static`)
            or one truth each.
        fps: the clips' frame rate.
        seed: of `shuffled`'s generator.
        names: which references to build.
    """
    _check(teacher)
    if len(truths) != len(teacher):
        raise ValueError(f"{len(teacher)} teacher clips but {len(truths)} truths")
    first = [t if isinstance(t, GroundTruth) else t[0] for t in truths]
    _, _, f, h, w = teacher.shape
    builders = {
        "static": lambda: static(first, num_frames=f, fps=fps, height=h, width=w),
        "frozen_frame": lambda: frozen_frame(teacher),
        "shuffled": lambda: shuffled(teacher, seed=seed),
        "reversed": lambda: reversed_frames(teacher),
    }
    unknown = set(names) - set(builders)
    if unknown:
        raise ValueError(f"unknown reference(s) {sorted(unknown)}; known: {REFERENCE_NAMES}")
    return {name: builders[name]() for name in names}


def _check(videos: torch.Tensor) -> None:
    if videos.dim() != 5 or videos.shape[1] != 3:
        raise ValueError(f"expected clips (N, 3, F, H, W), got {tuple(videos.shape)}")
