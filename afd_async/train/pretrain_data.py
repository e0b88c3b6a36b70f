"""The pretraining set: every (prompt, seed) clip rendered once, in parallel, before the first step.

Why: the loop drew each step's 32 clips from the renderer on the step's thread (about 10 ms a clip, 0.3 s a
step), so on a GPU the model waited on one CPU core, and the same 1200 clips (200 prompts x 6 seeds) were
rendered again every few steps. Each clip's physics draw is a function of (prompt index, seed), so the set is
finite and fixed: rendering it once with a process pool gives the same clips the loop rendered, bit for bit,
and each step only indexes a uint8 table (on the training device when it fits there).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch

from afd_async.physics import PhysicsOverrides
from afd_async.physics.suite import generate_training_prompts, load_prompt_suite
from afd_async.train.seeding import step_seed

if TYPE_CHECKING:
    from afd_async.config.root import RootConfig

__all__ = ["PretrainClips", "pretrain_prompts", "render_pretrain_clips", "weakened_physics"]


def weakened_physics(cfg: "RootConfig", prompt_index: int, seed: int) -> PhysicsOverrides:
    """The (deterministic) physics draw of one pretraining clip."""
    p = cfg.pretrain
    rng = random.Random(step_seed(cfg.train.seed, prompt_index * 1000 + seed, "physics"))
    u = lambda lo_hi: round(rng.uniform(*lo_hi), 3)  # noqa: E731 - tiny local helper
    return PhysicsOverrides(
        gravity_scale=u(p.gravity_scale), restitution_scale=u(p.restitution_scale),
        friction_scale=u(p.friction_scale), speed_scale=u(p.speed_scale),
    )


def pretrain_prompts(cfg: "RootConfig") -> list[str]:
    """The shipped train split, or `pretrain.num_prompts` scenes of the grammar with the eval split held out."""
    n = cfg.pretrain.num_prompts
    if n is None:
        return [r.prompt for r in load_prompt_suite("train")]
    held_out = [r.prompt for r in load_prompt_suite("eval")]
    return generate_training_prompts(n, seed=cfg.train.seed + 1, exclude=held_out)


@dataclass
class PretrainClips:
    """uint8 clips `(prompts · seeds_per_prompt, F, H, W, 3)`; row `i · seeds_per_prompt + seed`."""

    frames: torch.Tensor
    seeds_per_prompt: int

    def batch(self, prompt_index: Sequence[int], seeds: Sequence[int], device: torch.device) -> torch.Tensor:
        """`(B, 3, F, H, W)` float in [-1, 1] on `device`, as `LocalTeacherSource.batch` returns them."""
        rows = torch.tensor([i * self.seeds_per_prompt + s for i, s in zip(prompt_index, seeds)])
        x = self.frames[rows.to(self.frames.device)].to(device, non_blocking=True)
        return x.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


_worker_source = None


def _init_worker(cfg: "RootConfig") -> None:
    global _worker_source
    torch.set_num_threads(1)
    # deferred: a worker process builds its own renderer
    from afd_async.train.teacher_source import make_teacher_source

    _worker_source = make_teacher_source(cfg)


def _render(jobs: list[tuple[str, int, PhysicsOverrides]]) -> np.ndarray:
    assert _worker_source is not None
    return np.stack([_worker_source.clip(p, s, ph)[0] for p, s, ph in jobs])


def render_pretrain_clips(cfg: "RootConfig", prompts: Sequence[str], *, workers: Optional[int] = None) -> PretrainClips:
    """Render every (prompt, seed) of the pretraining set with `workers` processes (default: every core).

    A spawned pool, not forked: the caller's torch threads and CUDA context must not be copied into workers.
    """
    k = cfg.pretrain.seeds_per_prompt
    jobs = [(p, s, weakened_physics(cfg, i, s)) for i, p in enumerate(prompts) for s in range(k)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    size = -(-len(jobs) // (workers * 4))  # four pieces a worker: a slow piece does not hold the others
    pieces = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    if workers == 1:
        _init_worker(cfg)
        arrays = [_render(piece) for piece in pieces]
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(cfg,)) as pool:
            arrays = list(pool.map(_render, pieces))
    return PretrainClips(torch.from_numpy(np.concatenate(arrays)), k)
