"""Pretraining the tiny discriminator: a critic of event order and prompt, from the student's own corpus.

Why: AFD's D at real scale starts from VideoReward, a video reward model that already reads motion and the
prompt; only then does it learn teacher against student. The tiny D started from random weights, and the
cheapest thing that separates teacher from student clips in its first steps is motion energy: it preferred
teacher clips shuffled in time to the real ones, and its score fell out of step with the true physics
(issue 15; benchmarks/results/oracle_sweep_cpu_newbase.md). Temporal negatives during AFD help but arrive
late: at K = 4 the prompt swap stays at chance through 100 steps.

So, before AFD, D learns what every clip and prompt must agree on, from the corpus the base student was
pretrained on (`pretrain`'s prompts and weakened physics: never the teacher's physics, so D learns nothing
about the teacher outside AFD's query budget):

    corpus = the student's pretraining clips (pretrain_data, rendered once)
    for step:  x, c = a batch of distinct prompts' clips
               L = mean_kind mean_b −log σ(D(x_b, c_b) − D(corrupt_kind(x_b, c_b)))      (negatives_bt_loss)
    probes on held-out eval-split clips with the teacher's true physics, and ρ(D, −true error) on base rollouts

The result is a `discriminator.checkpoint` (the shipped one: `pretrained_d`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from afd_async.algo.negatives import make_negative, negatives_bt_loss
from afd_async.checkpoint import num_params, save_module
from afd_async.config.root import RootConfig
from afd_async.config.train import resolve_device
from afd_async.eval.d_probes import error_spearman, probe_discriminator
from afd_async.models.factory import make_discriminator, make_student, make_text_encoder
from afd_async.models.tiny_discriminator import TinyVideoDiscriminator
from afd_async.train.d_probe_monitor import make_probe_set
from afd_async.train.oracle_reward import make_oracle_reward
from afd_async.train.pretrain import warmup_cosine
from afd_async.train.pretrain_data import pretrain_prompts, render_pretrain_clips
from afd_async.train.seeding import step_generator, step_seed

PROBE_SEED = 0  # the probes' corruptions, fixed for the run: successive probes compare like with like
ROLLOUT_SEED = 1234  # the base student's rollouts for ρ, fixed for the run


class _Probe:
    """Held-out probes and ρ(D, −true error) on the base student's rollouts of the eval-split prompts."""

    def __init__(self, cfg: RootConfig, encode: Callable[[list[str]], torch.Tensor], device: torch.device) -> None:
        p = cfg.pretrain_d
        probe_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, d_probe_clips=p.probe_clips))
        self.set = make_probe_set(probe_cfg, encode, device)
        s = cfg.student
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            student = make_student(s, self.set.text.shape[1], device, text_kind=cfg.text.kind).eval()
            g = torch.Generator(device=device).manual_seed(ROLLOUT_SEED)
            text = self.set.text.repeat_interleave(2, dim=0)  # two rollouts a prompt: ρ ranks within and across
            self.prompts = [q for q in self.set.prompts for _ in range(2)]
            self.rollouts = torch.cat([student.rollout(text[i : i + 16], generator=g, timesteps=s.timesteps,
                                                       shift=s.shift, num_frames=s.num_frames)
                                       for i in range(0, text.shape[0], 16)])
        self.rollout_text = text
        self.errors = make_oracle_reward(cfg).errors(self.rollouts.cpu(), self.prompts)

    def __call__(self, d: torch.nn.Module) -> dict[str, float]:
        d.eval()
        with torch.no_grad():
            result = probe_discriminator(d, self.set.teacher, self.set.text, self.set.prompts, seed=PROBE_SEED)
            rho = error_spearman(lambda v, t, q: d.score(v, prompts=q, text=t), self.rollouts, self.rollout_text,
                                 self.prompts, self.errors)
        d.train()
        return {**result.as_dict(), "d_probe_rho_physics": rho if math.isfinite(rho) else None}


def pretrain_discriminator(cfg: RootConfig, *, on_log: Optional[Callable[[dict[str, Any]], None]] = None) -> Path:
    """Train a fresh tiny D on the pretraining corpus's corruptions and save it to `cfg.pretrain_d.output`."""
    p = cfg.pretrain_d
    if cfg.discriminator.kind != "tiny":
        raise ValueError("afd pretrain-d trains the tiny discriminator, not "
                         f"discriminator.kind={cfg.discriminator.kind}")
    torch.manual_seed(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    text_enc = make_text_encoder(cfg.text)
    prompts = pretrain_prompts(cfg)
    if len(prompts) < p.batch_size:
        raise ValueError(f"pretrain_d.batch_size={p.batch_size} distinct prompts a step, but the corpus has "
                         f"{len(prompts)} (pretrain.num_prompts)")
    text = text_enc.encode(prompts).to(device)
    t_render = time.monotonic()
    clips = render_pretrain_clips(cfg, prompts, workers=cfg.pretrain.render_workers or None)
    render_s = round(time.monotonic() - t_render, 1)
    if device.type == "cuda":
        clips.frames = clips.frames.to(device)
    probe = _Probe(cfg, text_enc.encode, device)
    d = make_discriminator(dataclasses.replace(cfg.discriminator, checkpoint=None), text_enc.dim, device)
    assert isinstance(d, TinyVideoDiscriminator)
    opt = torch.optim.AdamW([q for q in d.parameters() if q.requires_grad], lr=p.lr, betas=(0.5, 0.999))
    sched = warmup_cosine(opt, warmup_steps=p.warmup_steps, steps=p.steps)
    log_path = Path(p.output).with_suffix(".jsonl")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    first = {"step": 0, "phase": "probe", **probe(d), "render_s": render_s}
    done = 0
    with log_path.open("w") as log:
        def emit(rec: dict[str, Any]) -> None:
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if on_log:
                on_log(rec)

        emit(first)
        d.train()
        try:  # Ctrl-C / SIGINT (a call's deadline) saves the steps taken so far, and says so in the meta
            for step in range(p.steps):
                rng = random.Random(step_seed(cfg.train.seed, step, "pretrain_d"))
                idx = rng.sample(range(len(prompts)), p.batch_size)  # distinct prompts: every swap is valid
                seeds = [rng.randrange(cfg.pretrain.seeds_per_prompt) for _ in idx]
                x = clips.batch(idx, seeds, device)
                c, names = text[idx], [prompts[i] for i in idx]
                negs = [make_negative(k, x, c, names, step_generator(cfg.train.seed, step, f"pretrain_d:{k}"))
                        for k in p.kinds]
                s_real = d.score(x, prompts=names, text=c)
                s_neg = [d.score(n.video, prompts=n.prompts, text=n.text) for n in negs]
                loss = negatives_bt_loss(s_real, s_neg, [n.valid for n in negs])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(d.parameters(), 1.0)
                opt.step()
                sched.step()
                done = step + 1
                if step % p.log_every == 0 or done == p.steps:
                    acc = {f"acc_{n.kind}": float((s_real > s)[n.valid].float().mean()) for n, s in zip(negs, s_neg)}
                    emit({"step": done, "loss": loss.item(), **acc, "lr": sched.get_last_lr()[0],
                          "seconds": round(time.monotonic() - t0, 1)})
                if p.probe_every and done % p.probe_every == 0 and done < p.steps:
                    emit({"step": done, "phase": "probe", **probe(d)})
        except KeyboardInterrupt:
            print(f"pretrain-d: stopped after {done} of {p.steps} steps; saving", flush=True)
        last = {"step": done, "phase": "probe", **probe(d), "seconds": round(time.monotonic() - t0, 1)}
        emit(last)
    meta = {"pretrain_d": {"steps": done, "planned_steps": p.steps, "batch_size": p.batch_size, "lr": p.lr,
                           "kinds": list(p.kinds), "params": num_params(d), "prompts": len(prompts),
                           "text_kind": cfg.text.kind, "corpus": "pretrain (weakened physics)",
                           "probes_start": first, "probes_end": last}}
    return save_module(p.output, d.cpu(), meta=meta)
