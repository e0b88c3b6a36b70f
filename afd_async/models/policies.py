"""The student's three policies and eval EMA (DESIGN §2): θ, θ_old, θ_ref — how they are stored.

`StudentUpdater` needs θ (trained), θ_old (sampling policy, soft-updated after
each publish), θ_ref (frozen initial student) and an eval EMA. How they are
held depends on the student:

- `CopyPolicies` (tiny student; Wan full finetune): θ_old, θ_ref and the EMA are
  deep copies of θ. Small models, exact and simple.
- `LoraPolicies` (`models/wan/lora.py`, Wan LoRA): adapters on one frozen base,
  so a 1.3B student costs one base plus four small adapters, not four copies.

Both expose the same surface (`StudentPolicies`); the updater never asks which.
"""

from __future__ import annotations

import copy
from typing import Any, Literal, Protocol

import torch
from torch import nn

from afd_async.algo.policy import EMA, soft_update

__all__ = ["StudentPolicies", "CopyPolicies", "PolicyName"]

PolicyName = Literal["default", "old", "ref", "ema"]


class StudentPolicies(Protocol):
    """θ / θ_old / θ_ref / EMA of one student.

    Attributes:
        student: θ, the module the training loss calls (`student(x_t, t, text, clean)`).
        old: θ_old, callable and with `rollout`/`decode`; its `state_dict` is what the learner publishes.
        ref: θ_ref (frozen).
        ema: eval EMA with `.module`, `.update(student)`, `state_dict`/`load_state_dict`.
    """

    student: nn.Module
    old: nn.Module
    ref: nn.Module
    ema: Any

    def trainable_parameters(self) -> list[nn.Parameter]: ...

    def publish(self, eta: float) -> None:
        """θ_old ← η·θ_old + (1 − η)·θ."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CopyPolicies:
    """θ_old, θ_ref and the eval EMA as deep copies of θ (every parameter of θ trains)."""

    def __init__(self, student: nn.Module, *, eval_ema: float = 0.99) -> None:
        self.student = student
        self.old = copy.deepcopy(student).requires_grad_(False).eval()
        self.ref = copy.deepcopy(student).requires_grad_(False).eval()
        self.ema = EMA(student, eval_ema)

    def view(self, name: PolicyName) -> nn.Module:
        return {"default": self.student, "old": self.old, "ref": self.ref, "ema": self.ema.module}[name]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.student.parameters())

    @torch.no_grad()
    def publish(self, eta: float) -> None:
        soft_update(self.old, self.student, eta)

    def state_dict(self) -> dict[str, Any]:
        return {"student": self.student.state_dict(), "old": self.old.state_dict(), "ref": self.ref.state_dict(),
                "ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.old.load_state_dict(state["old"])
        self.ref.load_state_dict(state["ref"])
        self.ema.load_state_dict(state["ema"])
