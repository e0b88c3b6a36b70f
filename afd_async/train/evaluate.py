"""Physics evaluation of a student on eval prompts, against the renderer's ground truth.

The student never sees the seed that jitters a scene's start, so a rollout is
scored against the *nearest* of a few ground-truth trajectories of its prompt
(seeds `0..gt_seeds-1`): the error is the distance to the closest physically
correct motion, not to one arbitrary draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from afd_async.eval import physics_error
from afd_async.train.teacher_source import LocalTeacherSource, clip_from_video


@dataclass(frozen=True)
class EvalResult:
    """Mean over eval prompts (lower position error is better)."""

    position_error: float
    detection_rate: float
    motion_magnitude: float
    teacher_position_error: float  # the same metric on resampled teacher clips: the floor

    def as_dict(self, prefix: str = "eval_") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in self.__dict__.items()}


class PhysicsEvaluator:
    """Rolls a policy out on fixed prompts and noise, and scores the physics.

    Args:
        prompts: eval prompt texts.
        text: `(N, text_dim)` their embeddings.
        teacher: the local teacher source (for ground truth and the teacher floor).
        gt_seeds: number of ground-truth seeds per prompt to take the nearest of.
        seed: noise seed of the rollouts (fixed, so evaluations are comparable).
    """

    def __init__(
        self,
        *,
        prompts: Sequence[str],
        text: torch.Tensor,
        teacher: LocalTeacherSource,
        timesteps: Sequence[int],
        shift: float,
        num_frames: int,
        fps: float,
        gt_seeds: int = 4,
        seed: int = 1234,
        batch_size: int = 8,
    ) -> None:
        self.prompts = list(prompts)
        self.text = text
        self.teacher = teacher
        self.timesteps, self.shift, self.num_frames, self.fps = list(timesteps), shift, num_frames, fps
        self.gt_seeds, self.seed, self.batch_size = gt_seeds, seed, batch_size
        self._truths = [[teacher.clip(p, s)[1] for s in range(gt_seeds)] for p in self.prompts]
        self._teacher_floor = self._score(
            [teacher.batch([p], [gt_seeds])[0] for p in self.prompts]  # an unseen seed: not one of the references
        )[0]

    @torch.no_grad()
    def rollouts(self, policy: nn.Module) -> torch.Tensor:
        """`(N, 3, F, H, W)` rollouts with fixed noise."""
        g = torch.Generator().manual_seed(self.seed)
        out = []
        policy.eval()
        for i in range(0, len(self.prompts), self.batch_size):
            out.append(policy.decode(  # RGB: the Wan student's latents are decoded (identity for the tiny student)
                policy.rollout(
                    self.text[i : i + self.batch_size],
                    generator=g,
                    timesteps=self.timesteps,
                    shift=self.shift,
                    num_frames=self.num_frames,
                )
            ))
        return torch.cat(out)

    def _score(self, videos: Sequence[torch.Tensor]) -> tuple[float, float, float]:
        errs, dets, motion = [], [], []
        for video, truths in zip(videos, self._truths):
            clip = clip_from_video(video, self.fps)
            reports = [physics_error(clip, gt) for gt in truths]
            best = min(reports, key=lambda r: r.position_error)
            errs.append(best.position_error)
            dets.append(best.detection_rate)
            motion.append(best.motion_magnitude)
        return float(np.mean(errs)), float(np.mean(dets)), float(np.mean(motion))

    def evaluate(self, policy: nn.Module) -> tuple[EvalResult, torch.Tensor]:
        videos = self.rollouts(policy)
        err, det, mot = self._score(list(videos))
        return EvalResult(err, det, mot, self._teacher_floor), videos
