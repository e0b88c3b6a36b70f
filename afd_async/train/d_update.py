"""The discriminator's update: prompt-paired Bradley–Terry on (teacher, student) clips (§2.2).

Every discriminator is called the same way, `d.score(video, prompts=..., text=...)`:
the tiny D reads the prompt embedding, VideoReward the prompt strings.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from afd_async.algo.losses import bt_accuracy, bt_loss
from afd_async.parallel.dist import DistContext, reduce_metrics, wrap_ddp
from afd_async.train.batch import PairBatch


class _Scorer(nn.Module):
    """`forward` = `d.score`: DDP only hooks `forward`, and D is called through `score`."""

    def __init__(self, d: nn.Module) -> None:
        super().__init__()
        self.d = d

    def forward(self, video: torch.Tensor, prompts: Sequence[str], text: torch.Tensor) -> torch.Tensor:
        return self.d.score(video, prompts=prompts, text=text)


class DiscriminatorUpdater:
    """Owns D's optimizer and step count; `step` is one BT update on a pair batch.

    Call order per learner step: `step(batch)` × critic ratio, then the student
    learner calls `score(...)` with the (possibly older) published D.
    """

    def __init__(self, d: nn.Module, *, lr: float, grad_clip: float, weight_decay: float = 0.0,
                 dist: Optional[DistContext] = None) -> None:
        self.d = d
        self.dist = dist if dist is not None else DistContext()
        self._ddp = wrap_ddp(_Scorer(d), self.dist) if self.dist.distributed else None
        self.grad_clip = grad_clip
        self.opt = torch.optim.AdamW(d.parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)
        self.steps = 0

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def step(self, batch: PairBatch) -> dict[str, float]:
        """One BT step. With lr 0 (frozen_d) it only reports metrics."""
        self.d.train()
        if self._ddp is None or self.lr == 0:  # lr 0 (frozen_d) never steps: no DDP forward without a backward
            s_t = self.d.score(batch.teacher, prompts=batch.prompts, text=batch.text)
            s_s = self.d.score(batch.student_rgb.detach(), prompts=batch.prompts, text=batch.text)
        else:  # one DDP forward per backward: teacher and student rows in one call (D's norms are per sample)
            both = torch.cat([batch.teacher, batch.student_rgb.detach()])
            s_t, s_s = self._ddp(both, list(batch.prompts) * 2, torch.cat([batch.text, batch.text])).chunk(2)
        loss = bt_loss(s_t, s_s)
        metrics = {
            "d_loss": loss.item(),
            "d_acc": bt_accuracy(s_t.detach(), s_s.detach()),
            "d_sigma_student": torch.sigmoid(s_s.detach()).mean().item(),
            "d_p_student_wins": torch.sigmoid(s_s.detach() - s_t.detach()).mean().item(),
            "d_margin": (s_t - s_s).detach().mean().item(),
        }
        if self.lr > 0:
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(self.d.parameters(), self.grad_clip)
            if not torch.isfinite(norm):  # NaN/Inf loss or grads would poison D (and every score after it).
                # Checked on the all-reduced grads, not the per-rank loss: every DDP rank refuses together.
                self.opt.zero_grad(set_to_none=True)
                raise FloatingPointError(f"discriminator grad norm is {norm.item()} at step {self.steps}; "
                                         "refusing to step")
            metrics["d_grad_norm"] = float(norm)
            self.opt.step()
            self.steps += 1
        return reduce_metrics(metrics, self.dist)  # data-parallel: the global batch's figures on every rank

    @torch.no_grad()
    def score(self, video: torch.Tensor, text: torch.Tensor, prompts: Optional[Sequence[str]] = None) -> torch.Tensor:
        """D's scores `(B,)` for clips `(B, C, F, H, W)` of `prompts` (embedded as `text`); no grad, eval mode."""
        self.d.eval()
        return self.d.score(video, prompts=list(prompts or []), text=text).float()

    def state_dict(self) -> dict[str, Any]:
        return {"d": self.d.state_dict(), "opt": self.opt.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.d.load_state_dict(state["d"])
        self.opt.load_state_dict(state["opt"])
        self.steps = int(state["steps"])
