"""Score a student checkpoint on the eval split at the trained length and at `long_factor` x it.

Rollouts use fixed noise (one generator seed for every row), so rows differ
only by their weights. Teacher clips of the same prompts (an unseen jitter
seed) give the motion reference, the FVD-style reference set, and the
teacher's own scorecard: the measurement floor of every metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from afd_async.checkpoint import load_module
from afd_async.config.root import RootConfig
from afd_async.eval.frechet import RandomVideoFeatures
from afd_async.eval.scorecard import scorecard
from afd_async.models.factory import make_student, make_text_encoder
from afd_async.physics import GroundTruth, load_prompt_suite
from afd_async.train.teacher_source import LocalTeacherSource

ROLLOUT_SEED = 1234  # the PhysicsEvaluator's: the same noise for every row
TEACHER_SEED_OFFSET = 1000  # teacher reference clips use jitter seeds no ground truth used


@dataclass
class Horizon:
    """Everything needed to score clips of one length."""

    name: str
    num_frames: int
    truths: list[list[GroundTruth]]
    teacher: torch.Tensor  # (N, 3, F, H, W) teacher clips, unseen seeds
    source: LocalTeacherSource


class QualityScorer:
    """Builds the eval set once (truths, teacher clips, text) and scores any student on it."""

    def __init__(self, cfg: RootConfig, *, eval_prompts: int, long_factor: int, gt_seeds: int) -> None:
        self.cfg = cfg
        s, r = cfg.student, cfg.teacher.renderer
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
            self.horizons.append(Horizon(name, s.num_frames * factor, truths, teacher, src))

    def load_student(self, checkpoint: str | Path | None) -> torch.nn.Module:
        """The configured pretrained student (None) or a run's `student_final.safetensors`."""
        if checkpoint is None:
            return make_student(self.cfg.student, self.text_encoder.dim)
        from afd_async.models.tiny_student import TinyCausalStudent

        model, _ = load_module(checkpoint, TinyCausalStudent.from_config)
        return model

    @torch.no_grad()
    def rollouts(self, student: torch.nn.Module, num_frames: int, batch_size: int = 8) -> torch.Tensor:
        s = self.cfg.student
        g = torch.Generator().manual_seed(ROLLOUT_SEED)
        student.eval()
        return torch.cat([
            student.rollout(self.text[i : i + batch_size], generator=g, timesteps=s.timesteps, shift=s.shift,
                            num_frames=num_frames)
            for i in range(0, len(self.prompts), batch_size)
        ])

    def score(self, student: torch.nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Metrics `{horizon: {metric: value}}` plus per-horizon `curve`, and the rollouts themselves."""
        out: dict[str, Any] = {}
        videos: dict[str, torch.Tensor] = {}
        for h in self.horizons:
            v = self.rollouts(student, h.num_frames)
            metrics, curve = scorecard(v, self.cfg.student.fps, h.truths, teacher_videos=h.teacher, net=self.net)
            out[h.name] = {**metrics, "curve": [round(float(c), 5) for c in curve]}
            videos[h.name] = v
        return out, videos

    def score_teacher(self) -> dict[str, Any]:
        """A second set of teacher clips (other unseen seeds) through the same scorecard: each metric's floor."""
        out: dict[str, Any] = {}
        seeds = [2 * TEACHER_SEED_OFFSET + i for i in range(len(self.prompts))]
        for h in self.horizons:
            other = h.source.batch(self.prompts, seeds)
            metrics, curve = scorecard(other, self.cfg.student.fps, h.truths, teacher_videos=h.teacher, net=self.net)
            out[h.name] = {**metrics, "curve": [round(float(c), 5) for c in curve]}
        return out


def spread(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value), ignoring NaN."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
