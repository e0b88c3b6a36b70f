"""Physics evaluation of a student on eval prompts, against the renderer's ground truth.

The student never sees the seed that jitters a scene's start, so a rollout is
scored against the *nearest* of a few ground-truth trajectories of its prompt
(seeds `0..gt_seeds-1`): the error is the distance to the closest physically
correct motion, not to one arbitrary draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from afd_async.eval.bootstrap import bootstrap_mean
from afd_async.eval.scorecard import ClipScore, score_clips
from afd_async.train.teacher_source import LocalTeacherSource


@dataclass(frozen=True)
class EvalResult:
    """Means over eval prompts (lower is better for every error).

    `physics_score` is the primary score (`afd_async.eval.kinematic_score`: relative
    velocity error, 0 exact, 1 = a clip without motion) with its 95 % bootstrap CI
    over prompts; position error is kept for continuity but is won by still clips.
    """

    physics_score: float
    physics_score_ci_low: float
    physics_score_ci_high: float
    position_error: float
    detection_rate: float
    motion_magnitude: float
    teacher_physics_score: float  # the same score on resampled teacher clips of an unseen seed: the floor
    teacher_position_error: float

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
        # an unseen seed, not one of the references: the floor of every score at this size and frame rate
        self._teacher_floor = self._score(teacher.batch(self.prompts, [gt_seeds] * len(self.prompts)))

    @torch.no_grad()
    def rollouts(self, policy: nn.Module, seed: Optional[int] = None) -> torch.Tensor:
        """`(N, 3, F, H, W)` rollouts with fixed noise (`seed`, default the evaluator's: another draw of the same
        prompts, e.g. one per run seed)."""
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
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

    def clip_scores(self, videos: torch.Tensor) -> list[ClipScore]:
        """Per-prompt scores of `videos` (aligned with `prompts`), for paired comparisons cell by cell."""
        return score_clips(videos, self.fps, self._truths)

    def _score(self, videos: torch.Tensor) -> dict[str, float]:
        scores = self.clip_scores(videos)
        physics = bootstrap_mean(np.array([c.physics_score for c in scores]), n_boot=2000)
        return {
            "physics_score": physics.mean, "physics_score_ci_low": physics.lo, "physics_score_ci_high": physics.hi,
            "position_error": float(np.mean([c.position_error for c in scores])),
            "detection_rate": float(np.mean([c.detection_rate for c in scores])),
            "motion_magnitude": float(np.mean([c.motion_magnitude for c in scores])),
        }

    def evaluate(self, policy: nn.Module) -> tuple[EvalResult, torch.Tensor]:
        videos = self.rollouts(policy)
        floor = self._teacher_floor
        result = EvalResult(**self._score(videos), teacher_physics_score=floor["physics_score"],
                            teacher_position_error=floor["position_error"])
        return result, videos


def describe_change(start: Mapping[str, float], final: Mapping[str, float]) -> str:
    """One line for the end of a run: the primary score from start to end with CIs, and its reference points.

    Takes `EvalResult.as_dict("")` records (what summary.json holds under `start` / `final`).
    """
    def score(r: Mapping[str, float]) -> str:
        return (f"{r.get('physics_score', float('nan')):.3f} "
                f"[{r.get('physics_score_ci_low', float('nan')):.3f}, {r.get('physics_score_ci_high', float('nan')):.3f}]")

    return (f"eval physics score {score(start)} -> {score(final)} (95% CI over prompts; teacher "
            f"{final.get('teacher_physics_score', float('nan')):.3f}, a clip without motion 1.000)")
