"""The student's update (§2.3–2.5): the losses an objective (`train/objectives.py`) picks from — NFT, flow matching, terminal GAN.

One `StudentUpdater` owns θ's optimizer and the policies derived from θ —
θ_old (sampling policy, soft-updated after each publish), θ_ref (frozen initial
student) and the eval EMA — held by a policies object (`models/policies.py`:
deep copies for the tiny student, LoRA adapters on one base for Wan), so the
synchronous oracle and the async student learner run the very same code.

Call order per learner step:

    scores = d_updater.score(batch.student_rgb, batch.text, prompts=batch.prompts)  # s_c, no grad
    metrics = updater.step(batch, scores=scores, d=d)           # one optimizer step on θ
    updater.publish()                                           # θ_old ← η·θ_old + (1 − η)·θ; version += 1
    actors roll out updater.old (at updater.version)
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional, Sequence

import torch
from torch import nn

from afd_async.algo.losses import (
    AdvNorm,
    advantage_weight,
    advantages,
    expand_chunk_t,
    flow_matching_loss,
    gan_generator_loss,
    nft_loss,
    noise_to,
    ref_regulariser,
)
from afd_async.algo.policy import eta_schedule
from afd_async.models.policies import CopyPolicies, StudentPolicies
from afd_async.models.schedule import rollout_sigmas, sample_t
from afd_async.parallel.dist import DistContext, all_gather_list, all_gather_rows, reduce_metrics, wrap_ddp
from afd_async.train.batch import PairBatch, prompt_group_ids
from afd_async.train.objectives import Objective, Scores, get_objective
from afd_async.train.seeding import randn_on


class StudentUpdater:
    """θ's optimizer plus the policies that derive from θ.

    Invariants: `version` counts publishes (the learner_version of DESIGN §4);
    `old` is the policy the actors sample with; `ref` never changes.

    Args:
        student: θ, the module the loss calls.
        policies: how θ_old / θ_ref / the EMA are held (None: deep copies, `CopyPolicies`).
        objective: the registered objective (or its name) whose loss `step` takes.
        dist: this rank's place in a data-parallel learner (None: one process). With several
            ranks each `step` gets this rank's equal block of the global batch; θ runs under DDP,
            noise is drawn for the global batch and sliced, and advantages are normalised over
            the gathered global scores, so N ranks compute what one process computes.
    """

    def __init__(
        self,
        student: nn.Module,
        *,
        policies: Optional[StudentPolicies] = None,
        objective: Objective | str,
        lr: float,
        beta: float = 0.1,
        lam_ref: float = 1e-4,
        adv_clip: float = 5.0,
        adv_eps: float = 1e-4,
        adv_norm: AdvNorm = "nft",
        grad_clip: float = 1.0,
        weight_decay: float = 0.0,
        timesteps: Sequence[int] = (1000, 750, 500, 250),
        shift: float = 5.0,
        t_sampling: Literal["schedule", "shifted_uniform"] = "shifted_uniform",
        eta_rate: float = 0.001,
        eta_max: float = 0.5,
        eval_ema: float = 0.99,
        chunk_frames: int = 4,
        dist: Optional[DistContext] = None,
    ) -> None:
        self.student = student
        self.dist = dist if dist is not None else DistContext()
        self.theta = wrap_ddp(student, self.dist)  # what the loss calls: θ itself, or θ under DDP
        self.objective = get_objective(objective) if isinstance(objective, str) else objective
        self.beta, self.lam_ref, self.adv_clip, self.adv_eps, self.adv_norm = beta, lam_ref, adv_clip, adv_eps, adv_norm
        self.grad_clip = grad_clip
        self.timesteps, self.shift, self.t_sampling = list(timesteps), shift, t_sampling
        self.eta_rate, self.eta_max = eta_rate, eta_max
        self.chunk_frames = chunk_frames
        self.policies: StudentPolicies = policies if policies is not None else CopyPolicies(student, eval_ema=eval_ema)
        if self.policies.student is not student:
            raise ValueError("policies were built on another module than the student")
        self.old, self.ref, self.ema = self.policies.old, self.policies.ref, self.policies.ema
        self.params = self.policies.trainable_parameters()
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.steps = 0
        self.version = 0

    # ------------------------------------------------------------------ step

    def step(
        self,
        batch: PairBatch,
        *,
        scores: Scores = None,
        d: Optional[nn.Module] = None,
        generator: Optional[torch.Generator] = None,
    ) -> dict[str, float]:
        """One optimizer step on θ with the objective's loss. `scores` (B,) are the objective's per-clip
        rewards of the student clips (D's scores, or the oracle's; None where its loss takes none), or a
        callable giving them, which the loss calls after its forward passes;
        `d` is the differentiable discriminator (the terminal GAN loss)."""
        self.student.train()
        loss, metrics = self.objective.student_loss(self, batch, scores=scores, d=d, generator=generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"student loss is {loss.item()} at step {self.steps}; refusing to step")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        metrics["student_grad_norm"] = float(nn.utils.clip_grad_norm_(self.params, self.grad_clip))
        self.opt.step()
        self.ema.update(self.student)
        self.steps += 1
        metrics["student_loss"] = loss.item()
        return reduce_metrics(metrics, self.dist)  # data-parallel: the global batch's figures on every rank

    def publish(self) -> int:
        """θ_old ← η·θ_old + (1 − η)·θ with η ramping from 0; returns the new version."""
        self.policies.publish(eta_schedule(self.steps, rate=self.eta_rate, eta_max=self.eta_max))
        self.version += 1
        return self.version

    # ------------------------------------------------- losses (`objectives.StudentLosses`)

    def _noised(self, x0: torch.Tensor, generator: Optional[torch.Generator]):
        """Per-chunk t and ε drawn for the *global* batch, then this rank's rows (all rows with one rank)."""
        b, f = x0.shape[0], x0.shape[2]
        n = f // self.chunk_frames
        world = self.dist.world_size
        t = sample_t(
            (b * world, n), mode=self.t_sampling, timesteps=self.timesteps, shift=self.shift, generator=generator,
            device=x0.device,
        ).to(x0.dtype)
        eps = randn_on((b * world, *x0.shape[1:]), generator, device=x0.device, dtype=x0.dtype)  # same noise on any device
        if world > 1:
            rows = self.dist.shard(b * world)
            t, eps = t[rows], eps[rows]
        return t, eps, noise_to(x0, t, eps)

    def _advantages(self, batch: PairBatch, scores: torch.Tensor) -> torch.Tensor:
        """§2.3 advantages of this rank's rows, normalised over the whole (global) batch or prompt group."""
        if not self.dist.distributed:
            return advantages(scores, group_ids=batch.group_ids(), eps=self.adv_eps, norm=self.adv_norm)
        all_scores = all_gather_rows(scores.detach().float().contiguous(), self.dist)
        all_ids = all_gather_list(list(batch.prompt_ids), self.dist)
        adv = advantages(all_scores, group_ids=prompt_group_ids(all_ids, scores.device), eps=self.adv_eps,
                         norm=self.adv_norm)
        return adv[self.dist.shard(len(all_ids))]

    def nft(self, batch: PairBatch, scores: Callable[[], torch.Tensor], generator: Optional[torch.Generator]):
        """DiffusionNFT on the noised own rollout, weighted by the advantage of `scores()` `(B,)` (§2.3–2.4).

        The forward passes come first and the scores after: nothing in them depends on the scores, so a
        learner that still waits for D's weights (`StudentLearner`) overlaps that wait with them."""
        x0 = batch.student.detach()
        t, _eps, x_t = self._noised(x0, generator)
        v_theta = self.theta(x_t, t, batch.text, x0)
        with torch.no_grad():
            v_old = self.old(x_t, t, batch.text, x0)
            v_ref = self.ref(x_t, t, batch.text, x0) if self.lam_ref > 0 else v_theta.detach()
        scores = scores()
        adv = self._advantages(batch, scores)
        w = advantage_weight(adv, self.adv_clip)
        l_nft = nft_loss(x_t=x_t, t=t, x0=x0, v_theta=v_theta, v_old=v_old, weight=w, beta=self.beta, adv_clip=self.adv_clip)
        l_ref = ref_regulariser(v_theta, v_ref)
        metrics = {
            "nft_loss": l_nft.item(),
            "ref_loss": l_ref.item(),
            "adv_std": adv.std(unbiased=False).item() if adv.numel() > 1 else 0.0,
            "score_mean": scores.float().mean().item(),
            "score_std": scores.float().std(unbiased=False).item() if scores.numel() > 1 else 0.0,
            "w_mean": w.mean().item(),
            "w_min": w.min().item(),
            "w_max": w.max().item(),
        }
        return l_nft + self.lam_ref * l_ref, metrics

    def _pixel_space(self, batch: PairBatch) -> None:
        if batch.teacher.shape[1:] != batch.student.shape[1:]:
            raise ValueError(f"objective {self.objective.name} needs a pixel-space student (latent = video): teacher "
                             f"{tuple(batch.teacher.shape[1:])} vs student latent {tuple(batch.student.shape[1:])}; "
                             "use afd or frozen_d with a latent (Wan) student")

    def flow_matching(self, batch: PairBatch, generator: Optional[torch.Generator]):
        """Off-policy flow matching on the teacher clips (pixel-space student only)."""
        self._pixel_space(batch)
        x0 = batch.teacher.detach()
        t, eps, x_t = self._noised(x0, generator)
        loss = flow_matching_loss(self.theta(x_t, t, batch.text, x0), x0, eps)
        return loss, {"fm_loss": loss.item()}

    def terminal_gan(self, batch: PairBatch, d: nn.Module, generator: Optional[torch.Generator]):
        """Terminal adversarial reward: one denoising step at the last schedule level, D's gradient on its x0."""
        self._pixel_space(batch)
        x0 = batch.student.detach()
        b, f = x0.shape[0], x0.shape[2]
        n = f // self.chunk_frames
        t_last = rollout_sigmas(self.timesteps, self.shift)[-1]
        t = torch.full((b, n), t_last, device=x0.device, dtype=x0.dtype)
        world = self.dist.world_size
        eps = randn_on((b * world, *x0.shape[1:]), generator, device=x0.device, dtype=x0.dtype)
        eps = eps[self.dist.shard(b * world)] if world > 1 else eps
        x_t = noise_to(x0, t, eps)
        v_theta = self.theta(x_t, t, batch.text, x0)
        x0_theta = x_t - expand_chunk_t(t, f) * v_theta
        was = [p.requires_grad for p in d.parameters()]
        d.requires_grad_(False)  # D is not trained by the student's loss
        try:
            d.eval()
            fake = d.score(x0_theta.clamp(-1, 1), prompts=batch.prompts, text=batch.text)
            with torch.no_grad():
                real = d.score(batch.teacher, prompts=batch.prompts, text=batch.text)
        finally:
            for p, r in zip(d.parameters(), was):
                p.requires_grad_(r)
        l_gan = gan_generator_loss(fake, real)
        with torch.no_grad():
            v_ref = self.ref(x_t, t, batch.text, x0)
        l_ref = ref_regulariser(v_theta, v_ref)
        return l_gan + self.lam_ref * l_ref, {"gan_loss": l_gan.item(), "ref_loss": l_ref.item()}

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The policies' state (copies: `student`/`old`/`ref`/`ema`; LoRA: `lora`/`ema`), `opt`, `steps`, `version`."""
        return {**self.policies.state_dict(), "opt": self.opt.state_dict(), "steps": self.steps, "version": self.version}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policies.load_state_dict(state)
        self.opt.load_state_dict(state["opt"])
        self.steps = int(state["steps"])
        self.version = int(state["version"])
