"""The `oracle` objective's reward: the ground-truth physics score in place of D (issue 15, the ceiling).

With the embedded renderer as teacher every prompt has an exact ground truth,
so a student clip can be scored directly: s_c = −physics_score(ŷ_c), the
relative velocity error against the nearest of a few truth seeds
(`afd_async.eval.kinematic_score`; 0 exact, 1 no motion). Fed through the same
advantage and DiffusionNFT update as AFD, it tells how far the student and its
optimiser can go with a perfect reward, so the gap between AFD and `oracle`
is what the discriminator costs, and the gap between `oracle` and the teacher
is what the student and optimiser cost.

Only the embedded renderer teacher has ground truth; a provider teacher has
none, and `make_oracle_reward` refuses it with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from afd_async.eval.kinematic_score import SCORE_CAP, kinematic_score
from afd_async.eval.trajectory import robust_trajectories
from afd_async.physics.dynamics import simulate
from afd_async.physics.grammar import parse_prompt
from afd_async.physics.truth import GroundTruth
from afd_async.train.teacher_source import clip_from_video

if TYPE_CHECKING:
    from afd_async.config.root import RootConfig


class OracleReward:
    """Scores `(B, 3, F, H, W)` student clips in [-1, 1] by their true physics error (higher is better).

    Args:
        fps: the clips' frame rate.
        seconds: how long the truth is simulated (at least the clips' length).
        gt_seeds: truth seeds per prompt; a clip is scored against the nearest
            (the student never sees the jitter seed, so any is a correct answer).
    """

    def __init__(self, *, fps: float, seconds: float, gt_seeds: int = 4) -> None:
        if gt_seeds < 1:
            raise ValueError(f"gt_seeds must be >= 1, got {gt_seeds}")
        self.fps, self.seconds, self.gt_seeds = fps, seconds, gt_seeds
        self._truths: dict[str, list[GroundTruth]] = {}

    def truths(self, prompt: str) -> list[GroundTruth]:
        """The prompt's ground truths (seeds `0..gt_seeds-1`), simulated once."""
        if prompt not in self._truths:
            scene = parse_prompt(prompt)
            self._truths[prompt] = [simulate(scene, seed=k, seconds=self.seconds) for k in range(self.gt_seeds)]
        return self._truths[prompt]

    def errors(self, videos: torch.Tensor, prompts: Sequence[str]) -> np.ndarray:
        """`(B,)` physics score of each clip against its prompt's nearest truth (NaN-free: capped)."""
        if len(videos) != len(prompts):
            raise ValueError(f"{len(videos)} clips but {len(prompts)} prompts")
        out = np.empty(len(prompts), dtype=np.float64)
        for i, (video, prompt) in enumerate(zip(videos, prompts)):
            truths = self.truths(prompt)
            clip = clip_from_video(video, self.fps)
            tracks = robust_trajectories(clip.frames, truths[0].colors, clip.fps)
            scores = [kinematic_score(tracks, gt).velocity_error for gt in truths]
            finite = [s for s in scores if np.isfinite(s)]
            out[i] = min(finite) if finite else SCORE_CAP
        return out

    def __call__(self, videos: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """s_c = −error, `(B,)` float32 on the clips' device: the advantage's input, like D's scores."""
        return torch.from_numpy(-self.errors(videos, prompts)).float().to(videos.device)


def make_oracle_reward(cfg: "RootConfig") -> OracleReward:
    """The configured oracle; only the embedded renderer teacher has the ground truth it needs."""
    t = cfg.teacher
    if t.kind != "local" or t.server.backend != "physics":
        raise ValueError("algo=oracle needs ground-truth physics, which only the embedded renderer teacher has "
                         f"(teacher.kind=local, teacher.server.backend=physics); got teacher.kind={t.kind!r}, "
                         f"teacher.server.backend={t.server.backend!r}")
    s = cfg.student
    return OracleReward(fps=s.fps, seconds=s.num_frames / s.fps)
