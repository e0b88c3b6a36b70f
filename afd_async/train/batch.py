"""The learner-side batch of prompt-paired clips."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class PairBatch:
    """One learner batch (tensors already on the learner's device).

    Attributes:
        prompt_ids: per row, the prompt's id (rows with one id form a K-rollout group).
        prompts: per row, the prompt text.
        text: `(B, text_dim)` prompt embeddings.
        teacher: `(B, C, F, H, W)` teacher clips resampled to the student's size/fps/length, in [-1, 1].
        student: `(B, C, F, H, W)` the student's clean rollout latent x̂0 (θ_old at `policy_version`).
        student_rgb: `(B, 3, F, H, W)` decoded student video in [-1, 1] that D scores; the tiny
            pixel-space student's latent is its video, so this defaults to `student`.
        policy_version: `(B,)` version of θ_old that produced each rollout.
    """

    prompt_ids: list[str]
    prompts: list[str]
    text: torch.Tensor
    teacher: torch.Tensor
    student: torch.Tensor
    student_rgb: Optional[torch.Tensor] = None
    policy_version: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def __post_init__(self) -> None:
        b = len(self.prompt_ids)
        if not (len(self.prompts) == b == self.text.shape[0] == self.teacher.shape[0] == self.student.shape[0]):
            raise ValueError("PairBatch fields disagree on the batch size")
        if self.teacher.shape[1:] != self.student.shape[1:] and self.student_rgb is None:
            raise ValueError(f"teacher {tuple(self.teacher.shape)} and student {tuple(self.student.shape)} differ")
        if self.student_rgb is None:
            self.student_rgb = self.student
        if self.policy_version.numel() == 0:
            self.policy_version = torch.zeros(b, dtype=torch.long)

    def to(self, device: torch.device | str) -> "PairBatch":
        """A batch with every tensor on `device` (values and dtypes unchanged; tensors already there are shared).

        Why: batches are assembled on CPU (the feed's decoded tensors, cached text embeddings, the local
        teacher's clips) and the learner computes on `train.device`.
        """
        device = torch.device(device)
        rgb_is_student = self.student_rgb is self.student
        student = self.student.to(device)
        return PairBatch(
            prompt_ids=list(self.prompt_ids), prompts=list(self.prompts), text=self.text.to(device),
            teacher=self.teacher.to(device), student=student,
            student_rgb=None if rgb_is_student or self.student_rgb is None else self.student_rgb.to(device),
            policy_version=self.policy_version.to(device),
        )

    @property
    def size(self) -> int:
        return len(self.prompt_ids)

    def group_ids(self) -> Optional[torch.Tensor]:
        """Integer prompt groups when some prompt has K > 1 rollouts in the batch, else None."""
        return prompt_group_ids(self.prompt_ids, self.text.device)


def prompt_group_ids(prompt_ids: list[str], device: torch.device | str = "cpu") -> Optional[torch.Tensor]:
    """Integer prompt groups `(B,)` when some prompt has K > 1 rollouts among `prompt_ids`, else None."""
    if len(set(prompt_ids)) == len(prompt_ids):
        return None
    index = {p: i for i, p in enumerate(dict.fromkeys(prompt_ids))}
    return torch.tensor([index[p] for p in prompt_ids], device=device)
