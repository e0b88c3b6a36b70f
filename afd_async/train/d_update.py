"""The discriminator's update: prompt-paired Bradley–Terry on (teacher, student) clips (§2.2).

Every discriminator is called the same way, `d.score(video, prompts=..., text=...)`:
the tiny D reads the prompt embedding, VideoReward the prompt strings.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from afd_async.algo.appearance import match_appearance
from afd_async.algo.losses import bt_accuracy, bt_loss
from afd_async.algo.negatives import Negative, NegativeKind, PromptBank, make_negative, negatives_bt_loss
from afd_async.parallel.dist import DistContext, reduce_metrics, wrap_ddp
from afd_async.train.batch import PairBatch
from afd_async.train.seeding import step_generator


def _valid_accuracy(s_teacher: torch.Tensor, s_negative: torch.Tensor, valid: torch.Tensor) -> float:
    """D(teacher) > D(negative) over the valid rows; NaN without any (the key exists on every DDP rank)."""
    ok = valid.to(s_teacher.device)
    return bt_accuracy(s_teacher.detach()[ok], s_negative.detach()[ok]) if bool(ok.any()) else float("nan")


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

    Two opt-in regularisers against a saturated D (whose advantages carry no signal):
    `instance_noise` adds Gaussian noise of that std to both clips of the BT step (never to
    `score`), drawn from `step_generator(noise_seed, calls, "d_noise:<rank>")` so the sync loop and
    the async D learner, which call `step` equally often, draw the same noise; `max_accuracy` skips
    the optimizer step when the batch accuracy before it (on the noised clips when noise is on,
    global over DDP ranks) is strictly above the threshold. A skipped step still returns metrics and
    leaves D and its optimizer untouched; `steps` counts optimizer steps taken, `calls` every `step`.

    Temporal negatives (opt-in, `negatives` non-empty; `algo/negatives.py`): the batch's teacher clips (after
    the instance noise) corrupted by each kind are extra losers vs the real teacher clip (`time_warp`: vs the
    real clip resampled at its own pace, `Negative.winner`),
    L_D = L_BT(teacher, student) + negative_weight · mean_kind L_BT(teacher, corrupted), each kind's draws from
    `step_generator(noise_seed, calls, "d_negatives:<kind>:<rank>")`, so the sync loop and the D learner agree.
    `d_acc` and the `max_accuracy` gate stay about (teacher, student) pairs. A prompt swap's rows that the batch
    cannot give another prompt (K = batch size) take one from the prompts of earlier calls (`PromptBank`, kept in
    the state dict so a resumed learner draws what the first attempt drew).

    Appearance matching (opt-in, `match_appearance`; `algo/appearance.py`): each teacher clip of the BT step
    (and so of its negatives) is first blurred to its paired student clip's sharpness and given its per-channel
    mean and std, so D must separate the pair by what moves, not by looks.

    R1 (opt-in, `r1_gamma` > 0): L_D += r1_gamma / 2 · mean_b ‖∇_x D(x_teacher,b)‖², the gradient taken at the
    (noised) teacher clips the BT loss scores, as in Mescheder et al. 2018 for the real samples. Needs a double
    backward, which DDP lacks, so it is refused for data-parallel D learners.
    """

    def __init__(self, d: nn.Module, *, lr: float, grad_clip: float, weight_decay: float = 0.0,
                 dist: Optional[DistContext] = None, instance_noise: float = 0.0, max_accuracy: float = 1.0,
                 noise_seed: int = 0, negatives: Sequence[NegativeKind] = (), negative_weight: float = 1.0,
                 r1_gamma: float = 0.0, match_appearance: bool = False) -> None:
        self.d = d
        self.dist = dist if dist is not None else DistContext()
        if r1_gamma > 0 and self.dist.distributed:
            raise ValueError("algo.d_r1_gamma needs a double backward, which DDP does not support: use one D "
                             "learner rank (cluster.d_learner_ranks=1) or d_r1_gamma=0")
        self.r1_gamma, self.match_appearance = r1_gamma, match_appearance
        self._ddp = wrap_ddp(_Scorer(d), self.dist) if self.dist.distributed else None
        self.grad_clip = grad_clip
        self.opt = torch.optim.AdamW(d.parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)
        self.instance_noise, self.max_accuracy, self.noise_seed = instance_noise, max_accuracy, noise_seed
        self.negatives, self.negative_weight = tuple(negatives), negative_weight
        self.prompt_bank = PromptBank()
        self.steps = 0
        self.calls = 0  # `step` calls, skipped or not: the noise generator's step index
        self.skipped = 0

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def _noised(self, teacher: torch.Tensor, student: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both clips `(B, C, F, H, W)` plus N(0, instance_noise²), drawn on CPU from this call's generator."""
        if self.instance_noise <= 0:
            return teacher, student
        g = step_generator(self.noise_seed, self.calls, f"d_noise:{self.dist.rank}")
        n_t = torch.randn(tuple(teacher.shape), generator=g).to(teacher.device, teacher.dtype)
        n_s = torch.randn(tuple(student.shape), generator=g).to(student.device, student.dtype)
        return teacher + self.instance_noise * n_t, student + self.instance_noise * n_s

    def _negatives(self, teacher: torch.Tensor, batch: PairBatch) -> list[Negative]:
        """This call's corruptions of the (noised) teacher clips, one CPU generator per kind."""
        negs = [make_negative(kind, teacher, batch.text, batch.prompts,
                              step_generator(self.noise_seed, self.calls, f"d_negatives:{kind}:{self.dist.rank}"),
                              bank=self.prompt_bank)
                for kind in self.negatives]
        if "prompt_swap" in self.negatives:
            self.prompt_bank.add(batch.prompts, batch.text)
        return negs

    def _skip(self, acc: float) -> bool:
        """Whether D is too sure of this batch to learn from it (all ranks decide on the global accuracy)."""
        if self.max_accuracy >= 1.0:
            return False
        if self.dist.distributed:
            acc = reduce_metrics({"d_acc": acc}, self.dist)["d_acc"]
        return acc > self.max_accuracy

    def step(self, batch: PairBatch) -> dict[str, float]:
        """One BT step. With lr 0 (frozen_d), or skipped by `max_accuracy`, it only reports metrics."""
        self.d.train()
        # One memory layout whatever the clips' path: afd sync's teacher clips come strided from the renderer, afd
        # run's channels-last from the feed; a conv's float rounding depends on the layout, and Adam turns D's
        # rounding-level gradients (e.g. the head bias, which the BT loss cannot see) into lr-sized steps.
        teacher, student = batch.teacher.contiguous(), batch.student_rgb.detach().contiguous()
        if self.match_appearance:  # before the noise: the looks matched are the clips', not the noise's
            teacher = match_appearance(teacher, student).contiguous()
        teacher, student = self._noised(teacher, student)
        negs = self._negatives(teacher, batch)
        self.calls += 1
        r1 = self.r1_gamma > 0 and self.lr > 0
        if r1:
            teacher = teacher.detach().requires_grad_(True)
        if self._ddp is None or self.lr == 0:  # lr 0 (frozen_d) never steps: no DDP forward without a backward
            s_t = self.d.score(teacher, prompts=batch.prompts, text=batch.text)
            s_s = self.d.score(student, prompts=batch.prompts, text=batch.text)
            s_n = [self.d.score(n.video, prompts=n.prompts, text=n.text) for n in negs]
            s_w = [None if n.winner is None else self.d.score(n.winner, prompts=n.prompts, text=n.text) for n in negs]
        else:  # one DDP forward per backward: every row in one call (D's norms are per sample)
            won = [n for n in negs if n.winner is not None]
            rows = [(teacher, list(batch.prompts), batch.text), (student, list(batch.prompts), batch.text),
                    *[(n.video, n.prompts, n.text) for n in negs], *[(n.winner, n.prompts, n.text) for n in won]]
            scores = self._ddp(torch.cat([v for v, _, _ in rows]), [p for _, ps, _ in rows for p in ps],
                               torch.cat([t for _, _, t in rows])).chunk(len(rows))
            s_t, s_s, s_n = scores[0], scores[1], list(scores[2:2 + len(negs)])
            won_scores = iter(scores[2 + len(negs):])
            s_w = [None if n.winner is None else next(won_scores) for n in negs]
        pair_loss = bt_loss(s_t, s_s)
        loss = pair_loss
        extra: dict[str, float] = {}
        if negs:
            neg_loss = negatives_bt_loss(s_t, s_n, [n.valid for n in negs], s_w)
            loss = pair_loss + self.negative_weight * neg_loss
            extra = {"d_pair_loss": pair_loss.item(), "d_neg_loss": neg_loss.item(),
                     **{f"d_neg_acc_{n.kind}": _valid_accuracy(s_t if w is None else w, s, n.valid)
                        for n, s, w in zip(negs, s_n, s_w)}}
        if r1:
            (grad,) = torch.autograd.grad(s_t.sum(), teacher, create_graph=True)
            penalty = grad.pow(2).flatten(1).sum(1).mean()
            loss = loss + 0.5 * self.r1_gamma * penalty
            extra["d_r1"] = penalty.item()  # E‖∇_x D(x_teacher)‖², before the weight
        metrics = {
            "d_loss": loss.item(),  # L_D, the pair BT loss plus the weighted negatives' and R1 when they are on
            "d_acc": bt_accuracy(s_t.detach(), s_s.detach()),
            "d_sigma_student": torch.sigmoid(s_s.detach()).mean().item(),
            "d_p_student_wins": torch.sigmoid(s_s.detach() - s_t.detach()).mean().item(),
            "d_margin": (s_t - s_s).detach().mean().item(),
            **extra,
        }
        skip = self.lr > 0 and self._skip(metrics["d_acc"])
        if self.max_accuracy < 1.0:
            self.skipped += int(skip)
            metrics["d_skipped"], metrics["d_skipped_total"] = float(skip), float(self.skipped)
        if skip and self._ddp is not None:  # DDP expects a backward after its forward: run it, keep nothing
            loss.backward()
            self.opt.zero_grad(set_to_none=True)
        if self.lr > 0 and not skip:
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
        return {"d": self.d.state_dict(), "opt": self.opt.state_dict(), "steps": self.steps, "calls": self.calls,
                "skipped": self.skipped, "prompt_bank": self.prompt_bank.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.d.load_state_dict(state["d"])
        self.opt.load_state_dict(state["opt"])
        self.steps = int(state["steps"])
        self.calls = int(state.get("calls", self.steps))  # checkpoints from before `calls`: one call per step
        self.skipped = int(state.get("skipped", 0))
        self.prompt_bank.load_state_dict(state.get("prompt_bank", {}))  # checkpoints from before the bank: empty
