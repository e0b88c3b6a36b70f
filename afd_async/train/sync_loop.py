"""The synchronous reference loop: one process, no Redis, no ZeroMQ (CleanRL-style oracle).

    for step in range(steps):
        prompts  = sample(train prompts)                          # seeded by (run seed, step)
        teacher  = render(prompts) -> resample to student size     # the local teacher
        student  = θ_old.rollout(prompts)                         # on-policy clips
        D        ← BT step(s) on (teacher, student)               # §2.2 (lr 0 after warm-up for frozen_d)
                   (+ probes on held-out teacher clips every train.d_probe_every D steps, and at the end)
        s        = D(student);  w = weight(advantage(s))           # §2.3 (the objective's reward: D, oracle, none)
        θ        ← NFT step on the noised rollout with w           # §2.4 (the objective's loss: or sft / gan)
        θ_old    ← η·θ_old + (1 − η)·θ;  version += 1              # §2.5

The async system must reproduce this loop's losses at staleness 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from afd_async.config.prompts import train_prompts
from afd_async.config.root import RootConfig
from afd_async.config.train import resolve_device
from afd_async.models.factory import make_discriminator, make_student, make_student_policies, make_text_encoder
from afd_async.parallel.dist import DistContext
from afd_async.train.batch import PairBatch
from afd_async.train.d_probe_monitor import make_probe_monitor
from afd_async.train.d_step import d_steps
from afd_async.train.d_update import DiscriminatorUpdater
from afd_async.train.evaluate import EvalResult
from afd_async.train.objectives import get_objective
from afd_async.train.outputs import RunOutputs
from afd_async.train.plan import sample_prompts
from afd_async.train.seeding import step_generator
from afd_async.train.student_step import student_step
from afd_async.train.student_update import StudentUpdater



@dataclass
class SyncResult:
    output_dir: Path
    start: EvalResult
    final: EvalResult
    final_d_acc: float
    steps: int
    seconds: float


def make_student_updater(cfg: RootConfig, student: torch.nn.Module, *, dist: Optional[DistContext] = None) -> StudentUpdater:
    """The configured updater; `dist` places it in a data-parallel learner (None: one process)."""
    a, s = cfg.algo, cfg.student
    return StudentUpdater(
        student, policies=make_student_policies(s, student, eval_ema=a.eval_ema), objective=get_objective(a.name), lr=a.lr_student, beta=a.beta, lam_ref=a.lam_ref, adv_clip=a.adv_clip,
        adv_eps=a.adv_eps, adv_norm=a.adv_norm, grad_clip=a.grad_clip, weight_decay=a.weight_decay, timesteps=s.timesteps,
        shift=s.shift, t_sampling=a.t_sampling, eta_rate=a.eta_rate, eta_max=a.eta_max, eval_ema=a.eval_ema,
        chunk_frames=s.chunk_frames, dist=dist,
    )


def make_discriminator_updater(cfg: RootConfig, d: torch.nn.Module, *, dist: Optional[DistContext] = None) -> DiscriminatorUpdater:
    """The configured D updater (regularisers, temporal negatives); `dist` as for `make_student_updater`."""
    a = cfg.algo
    return DiscriminatorUpdater(d, lr=a.lr_d, grad_clip=a.grad_clip, weight_decay=a.weight_decay, dist=dist,
                                instance_noise=a.d_instance_noise, max_accuracy=a.d_max_accuracy, noise_seed=cfg.train.seed,
                                negatives=a.d_negatives, negative_weight=a.d_negative_weight, r1_gamma=a.d_r1_gamma,
                                match_appearance=a.d_match_appearance)


class SyncLoop:
    """Wires the AFD pieces in one process; `step()` is one iteration of the loop above."""

    def __init__(self, cfg: RootConfig) -> None:
        self.cfg = cfg
        self.objective = get_objective(cfg.algo.name)  # an unknown algo.name fails here, before anything is built
        self.device = resolve_device(cfg.train.device)  # a clear error naming the key, before anything is built
        torch.manual_seed(cfg.train.seed)
        if cfg.train.torch_threads:
            torch.set_num_threads(cfg.train.torch_threads)
        self.text = make_text_encoder(cfg.text, cfg.student, device=str(self.device))  # embeddings come back on CPU
        self.train_prompts = train_prompts(cfg)
        self.student = make_student(cfg.student, self.text.dim, self.device, text_kind=cfg.text.kind)
        self.d = make_discriminator(cfg.discriminator, self.text.dim, self.device, text_kind=cfg.text.kind)
        self.s_upd = make_student_updater(cfg, self.student)
        self.d_upd = make_discriminator_updater(cfg, self.d)
        self.outputs = RunOutputs(cfg, self.text)  # after the models: the eval set-up must not shift their init
        self.reward_fn = self.objective.make_rewards(cfg)  # here, as before: the oracle's set-up after the models
        self.teacher, self.evaluator = self.outputs.teacher, self.outputs.evaluator
        self.probes = make_probe_monitor(cfg, self.text.encode, self.device,
                                         sink=lambda record, _result: self.outputs.log.write(record))
        self.step_index = 0

    # ------------------------------------------------------------- data

    def sample_prompts(self, step: int, purpose: str = "prompts") -> tuple[list[str], list[str], list[int]]:
        """(prompt_ids, prompts, teacher seeds) of a batch: the same plan the async actors follow."""
        rows = sample_prompts(self.train_prompts, run_seed=self.cfg.train.seed, step=step, purpose=purpose,
                              batch_size=self.cfg.train.batch_size, rollouts_per_prompt=self.cfg.algo.rollouts_per_prompt)
        return [r.prompt_id for r in rows], [r.prompt for r in rows], [r.teacher_seed for r in rows]

    def make_batch(self, step: int, purpose: str = "prompts") -> PairBatch:
        ids, prompts, seeds = self.sample_prompts(step, purpose)
        text = self.text.encode(prompts).to(self.device)
        teacher = self.teacher.batch(prompts, seeds).to(self.device)
        g = step_generator(self.cfg.train.seed, step, f"{purpose}:rollout")  # CPU noise, moved to the model's device
        with torch.no_grad():
            student = self.s_upd.old.rollout(
                text, generator=g, timesteps=self.cfg.student.timesteps, shift=self.cfg.student.shift,
                num_frames=self.cfg.student.num_frames,
            )
            student_rgb = self.s_upd.old.decode(student)  # D scores video: the Wan student's latents are decoded
        return PairBatch(ids, prompts, text, teacher, student, student_rgb=student_rgb,
                         policy_version=torch.full((len(ids),), self.s_upd.version, dtype=torch.long)).to(self.device)

    # ------------------------------------------------------------- steps

    def warmup_d(self, progress: Optional[Callable[[int, dict], None]] = None) -> dict[str, float]:
        """D alone on (teacher, initial student) pairs."""
        metrics: dict[str, float] = {}
        for i in range(self.cfg.algo.d_warmup_steps):
            metrics = d_steps(self.d_upd, self.make_batch(i, "warmup"), calls=1, probes=self.probes).merged
            if progress:
                progress(i, metrics)
        self.d_upd.set_lr(self.objective.d_lr_after_warmup(self.cfg.algo.lr_d))
        return metrics

    def train_step(self, batch: PairBatch, step: int) -> dict[str, float]:
        """One learner step on a batch: D step(s), rewards, student step, θ_old update — the cores the async
        learners run too (`d_step.py`, `student_step.py`)."""
        metrics = d_steps(self.d_upd, batch, calls=self.cfg.algo.d_steps_per_student_step, probes=self.probes).merged
        metrics.update(student_step(self.s_upd, batch, rewards=self.reward_fn, d_score=lambda: self._d_score(batch),
                                    d=self.d, run_seed=self.cfg.train.seed, step=step))
        return metrics

    def rewards(self, batch: PairBatch) -> Optional[torch.Tensor]:
        """`(B,)` per-clip rewards as the objective forms them: D's scores, the true physics score (oracle), or None."""
        return self.reward_fn(batch, lambda: self._d_score(batch))

    def _d_score(self, batch: PairBatch) -> torch.Tensor:
        """`(B,)` scores of D on the student clips (no grad)."""
        return self.d_upd.score(batch.student_rgb, batch.text, prompts=batch.prompts)

    def step(self) -> dict[str, float]:
        batch = self.make_batch(self.step_index)
        metrics = self.train_step(batch, self.step_index)
        self.step_index += 1
        return metrics

    # ------------------------------------------------------------- run

    def run(self, *, show_progress: bool = True) -> SyncResult:
        cfg, out = self.cfg, self.outputs
        out.start(self.s_upd)

        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), TextColumn("{task.fields[info]}"), disable=not show_progress) as bar:
            warm = bar.add_task("D warm-up", total=cfg.algo.d_warmup_steps, info="")
            self.warmup_d(lambda i, m: bar.update(warm, completed=i + 1, info=f"d_acc {m['d_acc']:.2f}"))
            task = bar.add_task(f"{cfg.algo.name} steps", total=cfg.train.steps, info="")
            d_acc, last_err = float("nan"), float("nan")
            for _ in range(cfg.train.steps):
                m = self.step()
                s = self.step_index
                d_acc = m.get("d_acc", d_acc)
                out.log_step(s, m)
                if cfg.train.eval_every and s % cfg.train.eval_every == 0 and s < cfg.train.steps:
                    last_err = out.evaluate(self.s_upd).position_error
                bar.update(task, completed=s, info=f"d_acc {d_acc:.2f}  eval err {last_err:.4f}")
        if self.probes is not None:
            self.probes.finish(self.d_upd)  # the final D, unless its last step call was just probed
        summary, final = out.finish(self.s_upd, self.d, d_version=self.d_upd.steps, mode="sync", extra={})
        assert out.start_result is not None
        return SyncResult(out.out, out.start_result, final, d_acc, self.step_index, float(summary["seconds"]))
