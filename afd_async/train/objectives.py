"""The student objectives as registered strategies (DESIGN.md §2, issue 16.5): `algo.name` → an `Objective`.

An objective answers three questions, and nothing else in the code base asks which objective runs:

    objective = get_objective(cfg.algo.name)
    rewards   = objective.make_rewards(cfg)                          # once per learner
    D warm-up; then d_upd.set_lr(objective.d_lr_after_warmup(lr_d))  # whether D trains after its warm-up
    per step: wait for D if objective.student_waits_for_d
              scores = rewards(batch, d_score)                       # (B,) per-clip rewards, or None
              loss, metrics = objective.student_loss(updater, batch, scores=scores, d=d, generator=g)

The built-in objectives, one row each (`BUILT_IN` below):

    name      reward    student loss                            D after warm-up   student waits for D
    afd       d_score   nft (own rollout, §2.4)                 trains            yes
    frozen_d  d_score   nft                                     lr 0 (frozen)     yes
    oracle    oracle    nft (true physics score, issue 15)      trains            yes (its scores unused)
    sft       none      flow_matching (teacher clips)           trains            no
    gan       none      terminal_gan (D's gradient, no credit)  trains            yes (differentiable D)

A new objective is one module with one class and one `register` call, e.g.:

    @dataclass(frozen=True)
    class AntiD(Objective):
        name: str = "anti_d"
        reward: RewardSource = "custom"

        def make_rewards(self, cfg):
            return lambda batch, d_score: -d_score()

    register(AntiD())

and is selected with `algo.name=anti_d` once its module has been imported in the process that trains (the
roles of `afd run` import only this module's objectives).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional, Protocol, Union

import torch
from torch import nn

from afd_async.config.root import RootConfig
from afd_async.train.batch import PairBatch
from afd_async.train.oracle_reward import make_oracle_reward

RewardSource = Literal["d_score", "oracle", "none", "custom"]  # custom: the objective overrides `make_rewards`
StudentLoss = Literal["nft", "flow_matching", "terminal_gan"]
DTraining = Literal["always", "warmup_only"]  # warmup_only: lr_D = 0 once D's warm-up is over

DScore = Callable[[], torch.Tensor]
"""D's `(B,)` scores of the batch's student clips, computed when called (objectives that don't ask pay nothing)."""
Rewards = Callable[[PairBatch, DScore], Optional[torch.Tensor]]
"""`rewards(batch, d_score)` → `(B,)` per-clip rewards of the student clips, or None (the loss takes none)."""
Scores = Union[Optional[torch.Tensor], Callable[[], Optional[torch.Tensor]]]
"""The rewards a loss gets: a tensor, or a callable giving them when the loss needs them (after its forward
passes: a learner waiting for D then overlaps that wait with them; `student_step`)."""
LossOut = tuple[torch.Tensor, dict[str, float]]


class StudentLosses(Protocol):
    """The student losses an objective picks from (`StudentUpdater` implements them); each is (loss, metrics)."""

    def nft(self, batch: PairBatch, scores: Callable[[], torch.Tensor], generator: Optional[torch.Generator]
            ) -> LossOut:
        """DiffusionNFT on the noised own rollout, weighted by the advantage of `scores()` (§2.3–2.4), which
        it calls after its forward passes."""
        ...

    def flow_matching(self, batch: PairBatch, generator: Optional[torch.Generator]) -> LossOut:
        """Off-policy flow matching on the teacher clips."""
        ...

    def terminal_gan(self, batch: PairBatch, d: nn.Module, generator: Optional[torch.Generator]) -> LossOut:
        """Terminal adversarial loss through the (not trained here) discriminator `d`."""
        ...


def _d_score(batch: PairBatch, d_score: DScore) -> Optional[torch.Tensor]:
    return d_score()


def _no_reward(batch: PairBatch, d_score: DScore) -> Optional[torch.Tensor]:
    return None


def _oracle_rewards(cfg: RootConfig) -> Rewards:
    oracle = make_oracle_reward(cfg)  # refuses a teacher without ground truth, with the reason
    return lambda batch, d_score: oracle(batch.student_rgb, batch.prompts)


_REWARDS: dict[str, Callable[[RootConfig], Rewards]] = {
    "d_score": lambda cfg: _d_score,
    "oracle": _oracle_rewards,
    "none": lambda cfg: _no_reward,
}


def _nft(name: str, losses: StudentLosses, batch: PairBatch, scores: Scores, d: Optional[nn.Module],
         generator: Optional[torch.Generator]) -> LossOut:
    def rewards() -> torch.Tensor:
        value = scores() if callable(scores) else scores
        if value is None:
            raise ValueError(f"objective {name} needs per-clip rewards (D's scores, or the oracle's)")
        return value

    if scores is None:
        rewards()  # refused before any work
    return losses.nft(batch, rewards, generator)


def _flow_matching(name: str, losses: StudentLosses, batch: PairBatch, scores: Scores,
                   d: Optional[nn.Module], generator: Optional[torch.Generator]) -> LossOut:
    return losses.flow_matching(batch, generator)


def _terminal_gan(name: str, losses: StudentLosses, batch: PairBatch, scores: Scores,
                  d: Optional[nn.Module], generator: Optional[torch.Generator]) -> LossOut:
    if d is None:
        raise ValueError(f"objective {name} needs the discriminator module")
    return losses.terminal_gan(batch, d, generator)


_LOSSES = {"nft": _nft, "flow_matching": _flow_matching, "terminal_gan": _terminal_gan}


@dataclass(frozen=True)
class Objective:
    """One student objective: how its reward is formed, which loss the student takes, whether D trains on.

    The fields describe the objective and drive the default methods; a new objective overrides a method
    (`make_rewards`, `student_loss`, `d_lr_after_warmup`) where the built-in choices don't fit.

    Args:
        name: the `algo.name` that selects it.
        reward: where the per-clip rewards come from: D's score of the student clip, the true physics
            score (`train/oracle_reward.py`), none (the loss takes no reward), or `custom` (`make_rewards`
            is overridden).
        loss: the student's loss: `nft` (DiffusionNFT on its own rollout, weighted by the reward's
            advantage), `flow_matching` (on teacher clips), `terminal_gan` (D's gradient on a one-step x0).
        d_training: `always`, or `warmup_only` (lr_D = 0 after D's warm-up: the frozen-D baseline).
        student_waits_for_d: the student learner loads D ≥ the version the sync loop would use before each
            step (False: the student never needs D, and the D learner may lag behind it).
    """

    name: str
    reward: RewardSource = "d_score"
    loss: StudentLoss = "nft"
    d_training: DTraining = "always"
    student_waits_for_d: bool = True

    def __post_init__(self) -> None:
        if self.reward != "custom" and self.reward not in _REWARDS:
            raise ValueError(f"objective {self.name}: unknown reward {self.reward!r}; one of {sorted(_REWARDS)} or custom")
        if self.loss not in _LOSSES:
            raise ValueError(f"objective {self.name}: unknown loss {self.loss!r}; one of {sorted(_LOSSES)}")
        if self.d_training not in ("always", "warmup_only"):
            raise ValueError(f"objective {self.name}: d_training is always or warmup_only, got {self.d_training!r}")

    def make_rewards(self, cfg: RootConfig) -> Rewards:
        """The per-clip rewards, built once per learner (the oracle's ground truth is built here)."""
        if self.reward == "custom":
            raise NotImplementedError(f"objective {self.name} declares a custom reward but does not override make_rewards")
        return _REWARDS[self.reward](cfg)

    def student_loss(self, losses: StudentLosses, batch: PairBatch, *, scores: Scores,
                     d: Optional[nn.Module], generator: Optional[torch.Generator]) -> LossOut:
        """The student's loss on `batch` (scores: `make_rewards`' output, or a callable giving it; d: the
        discriminator) and its metrics."""
        return _LOSSES[self.loss](self.name, losses, batch, scores, d, generator)

    def d_lr_after_warmup(self, lr_d: float) -> float:
        """D's learning rate once its warm-up is over (0: D is frozen)."""
        return 0.0 if self.d_training == "warmup_only" else lr_d


_REGISTRY: dict[str, Objective] = {}


def register(objective: Objective, *, replace: bool = False) -> Objective:
    """Make `objective` selectable as `algo.name`; a name taken twice is refused unless `replace`."""
    if objective.name in _REGISTRY and not replace:
        raise ValueError(f"objective {objective.name!r} is registered already")
    _REGISTRY[objective.name] = objective
    return objective


def unregister(name: str) -> None:
    """Forget an objective (tests that register their own)."""
    _REGISTRY.pop(name, None)


def get_objective(name: str) -> Objective:
    """The objective registered as `name` (`algo.name`), or a ValueError naming the registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown objective algo.name={name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def registered() -> list[str]:
    """The registered objectives' names, sorted."""
    return sorted(_REGISTRY)


BUILT_IN: tuple[Objective, ...] = (
    Objective("afd"),
    Objective("frozen_d", d_training="warmup_only"),
    Objective("oracle", reward="oracle"),
    Objective("sft", reward="none", loss="flow_matching", student_waits_for_d=False),
    Objective("gan", reward="none", loss="terminal_gan"),
)
for _objective in BUILT_IN:
    register(_objective)
