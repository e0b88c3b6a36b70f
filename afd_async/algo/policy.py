"""Old-policy and eval EMAs (DESIGN.md §2.5).

θ_old ← η·θ_old + (1 − η)·θ after each publish, with η ramping from 0
(DiffusionNFT: η = min(rate·step, η_max)), so early training is fully
on-policy and later the sampling policy lags smoothly. A separate eval EMA
(decay 0.99, ramped in by `ema_decay_at`) is what we evaluate (`train.eval_policy`) and ship beside θ_old.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def eta_schedule(step: int, *, rate: float, eta_max: float) -> float:
    """η for the old-policy soft update at learner step `step` (0 at step 0)."""
    return min(rate * step, eta_max)


def ema_decay_at(decay: float, updates: int) -> float:
    """The eval EMA's decay at its `updates`-th update: min(decay, (1 + n) / (10 + n)).

    Without this ramp (diffusers' `EMAModel` default) a 0.99 EMA still holds 37 % of the
    initial weights after 100 steps, so evaluating it would mostly show the pretrained student.
    """
    return min(decay, (1.0 + updates) / (10.0 + updates))


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    """target ← decay·target + (1 − decay)·source, parameters and float buffers."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")
    for pt, ps in zip(target.parameters(), source.parameters(), strict=True):
        pt.lerp_(ps.detach(), 1.0 - decay)
    for bt, bs in zip(target.buffers(), source.buffers(), strict=True):
        if bt.is_floating_point():
            bt.lerp_(bs.detach(), 1.0 - decay)
        else:
            bt.copy_(bs)


class EMA:
    """An exponential moving average of a module's weights, with `state_dict` for resume."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")

        self.decay = decay
        self.module = copy.deepcopy(module).requires_grad_(False).eval()
        self.updates = 0

    def update(self, source: nn.Module) -> None:
        soft_update(self.module, source, ema_decay_at(self.decay, self.updates))
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["module"])
