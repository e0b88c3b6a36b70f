"""The rollout plan: which prompts, teacher seeds and noise each group uses.

Group n is one learner batch. Groups `0 … W−1` are the discriminator's warm-up
(D alone on teacher vs initial-student pairs); group `W + s` is student step s.
Everything about a group is a pure function of (run seed, n), exactly what the
synchronous loop draws for the same step, so any actor can roll out any group
and the staleness-0 system reproduces `afd sync`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from afd_async.physics import PromptRecord
from afd_async.train.seeding import step_generator, step_seed

TEACHER_SEEDS_PER_PROMPT = 4  # a small pool of teacher clips per prompt: the teacher cache's reuse


@dataclass(frozen=True)
class PlannedPair:
    prompt_id: str
    prompt: str
    teacher_seed: int


@dataclass(frozen=True)
class Group:
    """One planned learner batch."""

    index: int  # n, across warm-up and training
    phase: Literal["warmup", "train"]
    step: int  # index within its phase
    pairs: tuple[PlannedPair, ...]

    @property
    def purpose(self) -> str:
        """Seeding namespace, shared with the synchronous loop."""
        return "warmup" if self.phase == "warmup" else "prompts"

    def rollout_generator(self, run_seed: int, device: str | torch.device = "cpu") -> torch.Generator:
        return step_generator(run_seed, self.step, f"{self.purpose}:rollout", device)


def sample_prompts(
    prompts: Sequence[PromptRecord], *, run_seed: int, step: int, purpose: str, batch_size: int, rollouts_per_prompt: int
) -> tuple[PlannedPair, ...]:
    """A batch of (prompt, teacher seed) rows; K rollouts of a prompt share its teacher clip."""
    k = rollouts_per_prompt
    n = max(1, batch_size // k)
    rng = random.Random(step_seed(run_seed, step, purpose))
    recs = rng.sample(list(prompts), n)
    seeds = [rng.randrange(TEACHER_SEEDS_PER_PROMPT) for _ in recs]
    return tuple(PlannedPair(r.prompt_id, r.prompt, s) for r, s in zip(recs, seeds) for _ in range(k))


class Planner:
    """Maps a group index to its `Group` (pure; every role builds its own)."""

    def __init__(
        self, prompts: Sequence[PromptRecord], *, run_seed: int, batch_size: int, rollouts_per_prompt: int,
        warmup_groups: int, train_groups: int,
    ) -> None:
        if not prompts:
            raise ValueError("the plan needs at least one prompt")
        self.prompts = list(prompts)
        self.run_seed, self.batch_size, self.k = run_seed, batch_size, rollouts_per_prompt
        self.warmup_groups, self.train_groups = warmup_groups, train_groups

    @property
    def total_groups(self) -> int:
        return self.warmup_groups + self.train_groups

    def group(self, n: int) -> Group:
        if not 0 <= n < self.total_groups:
            raise IndexError(f"group {n} is outside the plan (0..{self.total_groups - 1})")
        phase: Literal["warmup", "train"] = "warmup" if n < self.warmup_groups else "train"
        step = n if phase == "warmup" else n - self.warmup_groups
        purpose = "warmup" if phase == "warmup" else "prompts"
        pairs = sample_prompts(self.prompts, run_seed=self.run_seed, step=step, purpose=purpose,
                               batch_size=self.batch_size, rollouts_per_prompt=self.k)
        return Group(n, phase, step, pairs)

    def min_policy_version(self, n: int, staleness: int) -> int:
        """Oldest θ_old version allowed to roll out group n: step − k for training groups, 0 for warm-up."""
        g = self.group(n)
        return 0 if g.phase == "warmup" else max(0, g.step - staleness)
