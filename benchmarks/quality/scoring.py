"""Clips of every row on the eval prompts, at the trained length and at `long_factor` x it, scored per prompt.

A row is scored once per benchmark seed, so every row has (seed, prompt)
cells that `afd_async.eval.bootstrap` pairs across rows:

- student rows (base and trained) roll out with noise seeded by
  `ROLLOUT_SEED + seed`, the same for every row at that seed, so rows at one
  cell differ only by their weights (trained rows load the checkpoint of the
  training run of that seed; base is the same pretrained weights at every seed);
- reference rows (`afd_async.eval.references`) are built from teacher clips
  of jitter seeds `TEACHER_ROW_OFFSET + seed * P + prompt`, a different unseen
  seed per cell, so the teacher's own spread is measured, not one draw.

Every clip is scored against the nearest of `gt_seeds` ground truths of its
prompt (`afd_async.eval.scorecard.score_clips`). One more set of teacher clips
(seeds `TEACHER_SEED_OFFSET + prompt`) is the motion reference of
`motion_ratio` / `speed_ratio` and the FVD-style reference set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from afd_async.checkpoint import load_module
from afd_async.config.root import RootConfig
from afd_async.eval.frechet import RandomVideoFeatures, video_frechet_distance
from afd_async.eval.physics import motion_magnitude
from afd_async.eval.references import references
from afd_async.eval.scorecard import ClipScore, score_clips, video_to_clip
from afd_async.eval.trajectory import robust_trajectories
from afd_async.models.factory import make_student, make_text_encoder
from afd_async.physics import GroundTruth, load_prompt_suite
from afd_async.train.teacher_source import LocalTeacherSource

ROLLOUT_SEED = 1234  # the PhysicsEvaluator's: benchmark seed 0 rolls out with the noise the runs evaluate with
TEACHER_SEED_OFFSET = 1000  # the motion-reference teacher clips: jitter seeds no ground truth used
TEACHER_ROW_OFFSET = 2 * TEACHER_SEED_OFFSET  # teacher-row clips: another unseen seed per (seed, prompt)


@dataclass
class Horizon:
    """Everything needed to score clips of one length.

    Attributes:
        truths: per prompt, the ground truths of seeds `0..gt_seeds-1`.
        teacher: `(N, 3, F, H, W)` motion-reference teacher clips (seeds `TEACHER_SEED_OFFSET + i`).
        motion_ref: mean pixel motion of `teacher` (denominator of `motion_ratio`).
        speed_ref: mean tracked object speed of `teacher` (denominator of `speed_ratio`).
    """

    name: str
    num_frames: int
    truths: list[list[GroundTruth]]
    teacher: torch.Tensor
    source: LocalTeacherSource
    motion_ref: float = field(default=float("nan"))
    speed_ref: float = field(default=float("nan"))


@dataclass
class Scored:
    """One row's clips at one (seed, horizon): per-prompt scores, FVD-style distance, and the clips."""

    scores: list[ClipScore]
    frechet: float
    videos: torch.Tensor


class QualityScorer:
    """Builds the eval set once (truths, reference teacher clips, text) and scores any row on it."""

    def __init__(self, cfg: RootConfig, *, eval_prompts: int, long_factor: int, gt_seeds: int) -> None:
        self.cfg = cfg
        s, r = cfg.student, cfg.teacher.renderer
        self.fps = s.fps
        self.prompts = [p.prompt for p in load_prompt_suite("eval")[:eval_prompts]]
        self.text_encoder = make_text_encoder(cfg.text)
        self.text = self.text_encoder.encode(self.prompts)
        self.net = RandomVideoFeatures()
        self.horizons: list[Horizon] = []
        for name, factor in (("1x", 1), (f"{long_factor}x", long_factor)):
            src = LocalTeacherSource(render_height=r.height, render_width=r.width, render_fps=r.fps,
                                     render_seconds=s.num_frames / s.fps * factor, height=s.height, width=s.width,
                                     fps=s.fps, num_frames=s.num_frames * factor)
            truths = [[src.clip(p, k)[1] for k in range(gt_seeds)] for p in self.prompts]
            teacher = src.batch(self.prompts, [TEACHER_SEED_OFFSET + i for i in range(len(self.prompts))])
            h = Horizon(name, s.num_frames * factor, truths, teacher, src)
            clips = [video_to_clip(v, self.fps) for v in teacher]
            h.motion_ref = float(np.mean([motion_magnitude(c) for c in clips]))
            h.speed_ref = float(np.mean([robust_trajectories(c.frames, t[0].colors, self.fps).speed().mean()
                                         for c, t in zip(clips, truths)]))
            self.horizons.append(h)

    def load_student(self, checkpoint: str | Path | None) -> torch.nn.Module:
        """The configured pretrained student (None) or a run's saved policy (`student_ema` / `student_final`)."""
        if checkpoint is None:
            return make_student(self.cfg.student, self.text_encoder.dim, text_kind=self.cfg.text.kind)
        from afd_async.models.tiny_student import TinyCausalStudent

        model, _ = load_module(checkpoint, TinyCausalStudent.from_config)
        return model

    @torch.no_grad()
    def rollouts(self, student: torch.nn.Module, num_frames: int, batch_size: int = 8, *, seed: int = 0) -> torch.Tensor:
        """`(N, 3, F, H, W)` clips of every prompt, noise from `ROLLOUT_SEED + seed` (the same for every row)."""
        s = self.cfg.student
        g = torch.Generator().manual_seed(ROLLOUT_SEED + seed)
        student.eval()
        return torch.cat([
            student.rollout(self.text[i : i + batch_size], generator=g, timesteps=s.timesteps, shift=s.shift,
                            num_frames=num_frames)
            for i in range(0, len(self.prompts), batch_size)
        ])

    def reference_clips(self, h: Horizon, seed: int, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """`{name: (N, 3, F, H, W)}` for `teacher` and the `afd_async.eval.references` names in `names`.

        All are built from one fresh set of teacher clips of this seed (`TEACHER_ROW_OFFSET + seed * N + i`);
        `static` freezes each clip's own ground truth, `shuffled` draws its orders from `seed`.
        """
        n = len(self.prompts)
        jitter = [TEACHER_ROW_OFFSET + seed * n + i for i in range(n)]
        if max(jitter) >= TEACHER_ROW_OFFSET + TEACHER_SEED_OFFSET:
            raise ValueError(f"seed {seed} x {n} prompts runs into other jitter seeds; use smaller seeds")
        teacher = h.source.batch(self.prompts, jitter)
        own = [h.source.clip(p, j)[1] for p, j in zip(self.prompts, jitter)]
        refs = [m for m in names if m != "teacher"]
        out: dict[str, torch.Tensor] = dict(references(teacher, own, fps=self.fps, seed=seed, names=refs)) if refs else {}
        if "teacher" in names:
            out["teacher"] = teacher
        return out

    def score(self, videos: torch.Tensor, h: Horizon) -> Scored:
        """Per-prompt scores of `videos` against `h`'s truths, and their FVD-style distance to `h.teacher`."""
        return Scored(score_clips(videos, self.fps, h.truths),
                      float(video_frechet_distance(videos, h.teacher, net=self.net)), videos)


def rollout_all(scorer: QualityScorer, student: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """`{horizon: clips}` of one student at one seed."""
    return {h.name: scorer.rollouts(student, h.num_frames, seed=seed) for h in scorer.horizons}
