"""Pretraining the tiny student: teacher-forced flow matching on weakly-physical renderer clips.

Why weakened physics: AFD's claim is that on-policy adversarial training fixes
motion and physics that a pretrained student gets wrong. Our renderer knows
the true physics, so we give the student a start that is plausible but wrong
in a measurable way (see `PretrainConfig`), and the eval measures whether AFD
moves it towards the teacher's physics.

    set = render every (prompt, seed, physics ~ weakened ranges) once -> resample   (`pretrain_data`)
    for step in range(steps):
        x0     = set[a batch of (prompt, seed) drawn from the step's seed]
        t, ε   per chunk;  x_t = (1 − t)·x0 + t·ε
        loss   = ‖t·(v_θ(x_t, t, text, clean = x0) − (ε − x0))‖²   (pretrain.loss=x0; `v`: without the t)
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from afd_async.algo.losses import flow_matching_loss, noise_to, x0_matching_loss
from afd_async.algo.policy import EMA
from afd_async.checkpoint import num_params, save_module
from afd_async.config.root import RootConfig
from afd_async.config.train import resolve_device
from afd_async.models.factory import make_student, make_text_encoder, student_kwargs
from afd_async.models.schedule import sample_t
from afd_async.models.tiny_student import TinyCausalStudent
from afd_async.train.pretrain_data import pretrain_prompts, render_pretrain_clips
from afd_async.train.seeding import step_generator, step_seed


def warmup_cosine(opt: torch.optim.Optimizer, *, warmup_steps: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_steps`, then cosine decay to 0 at `steps` (the pretraining runs' schedule)."""
    def factor(i: int) -> float:
        return min(1.0, (i + 1) / max(1, warmup_steps)) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / max(1, steps)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def pretrain(cfg: RootConfig, *, on_log: Optional[Callable[[dict], None]] = None) -> Path:
    """Train a fresh tiny student and save it (with its EMA) to `cfg.pretrain.output`."""
    p, s = cfg.pretrain, cfg.student
    torch.manual_seed(cfg.train.seed)
    text_enc = make_text_encoder(cfg.text)
    prompts = pretrain_prompts(cfg)
    text = text_enc.encode(prompts)
    device = resolve_device(cfg.train.device)
    text = text.to(device)
    t_render = time.monotonic()
    clips = render_pretrain_clips(cfg, prompts, workers=p.render_workers or None)
    render_s = round(time.monotonic() - t_render, 1)
    if device.type == "cuda":  # the whole uint8 set on the card (1 GB at 20,000 clips): a step indexes it there
        clips.frames = clips.frames.to(device)
    if p.init is None:
        model = TinyCausalStudent(**student_kwargs(s, text_enc.dim)).to(device)
    else:  # a fine-tune: the checkpoint's architecture must match `student` (make_student says which key differs)
        model = make_student(dataclasses.replace(s, checkpoint=p.init), text_enc.dim, device,
                             text_kind=cfg.text.kind)
    ema = EMA(model, 0.995)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=0.01)
    sched = warmup_cosine(opt, warmup_steps=p.warmup_steps, steps=p.steps)
    n_chunks = s.num_frames // s.chunk_frames
    t0 = time.monotonic()
    log_path = Path(p.output).with_suffix(".jsonl")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        done = 0
        try:  # Ctrl-C / SIGINT (a call's deadline) saves the steps taken so far, and says so in the meta
            for step in range(p.steps):
                rng = random.Random(step_seed(cfg.train.seed, step, "pretrain"))
                idx = [rng.randrange(len(prompts)) for _ in range(p.batch_size)]
                seeds = [rng.randrange(p.seeds_per_prompt) for _ in idx]
                x0 = clips.batch(idx, seeds, device)
                g = step_generator(cfg.train.seed, step, "pretrain-noise")
                t = sample_t((p.batch_size, n_chunks), mode=cfg.algo.t_sampling, timesteps=s.timesteps, shift=s.shift, generator=g).to(device)
                eps = torch.randn(x0.shape, generator=g).to(device)
                x_t = noise_to(x0, t, eps)
                v = model(x_t, t, text[idx], x0)
                loss = x0_matching_loss(v, x0, eps, t) if p.loss == "x0" else flow_matching_loss(v, x0, eps)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                ema.update(model)
                if step % p.log_every == 0 or step == p.steps - 1:
                    rec = {"step": step, "loss": loss.item(), "lr": sched.get_last_lr()[0], "seconds": round(time.monotonic() - t0, 1),
                           "render_s": render_s}
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    if on_log:
                        on_log(rec)
                done = step + 1
        except KeyboardInterrupt:
            print(f"pretrain: stopped after {done} of {p.steps} steps; saving", flush=True)
    meta = {"pretrain": {"steps": done, "planned_steps": p.steps, "batch_size": p.batch_size, "params": num_params(model), "init": p.init,
                         "prompts": len(prompts), "num_prompts": p.num_prompts, "text_kind": cfg.text.kind, "loss": p.loss,
                         "gravity_scale": p.gravity_scale, "restitution_scale": p.restitution_scale,
                         "friction_scale": p.friction_scale, "speed_scale": p.speed_scale}}
    return save_module(p.output, ema.module.cpu(), meta=meta)
