"""N data-parallel learner ranks against one process: same losses, same weights, resumable.

Runs the real updaters (`StudentUpdater`, `DiscriminatorUpdater`) on a tiny
student and D for a few steps of synthetic, seeded pair batches. Started
plainly it is the single-process reference; under `torchrun --nproc-per-node N`
each rank trains its block of every global batch. Rank 0 writes per-step
losses (averaged over ranks: equal blocks make that the global mean), the step
times and the final weights, so a test or a benchmark compares the two.

    python -m afd_async.train.replica_check --out ref --steps 4
    torchrun --standalone --nproc-per-node 2 -m afd_async.train.replica_check --out ddp --steps 4
    torchrun ... --steps 4 --save ckpt.pt --save-at 2 ; torchrun ... --steps 4 --resume ckpt.pt   # resume
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from afd_async.models.tiny_discriminator import TinyVideoDiscriminator
from afd_async.models.tiny_student import TinyCausalStudent
from afd_async.parallel.dist import DistContext, init_distributed, shutdown_distributed
from afd_async.train.batch import PairBatch
from afd_async.train.d_update import DiscriminatorUpdater
from afd_async.train.seeding import step_generator
from afd_async.train.student_update import StudentUpdater

TEXT_DIM = 16
SIZES: dict[str, dict[str, int]] = {
    # frames, height/width, student width/depth, D channels
    "tiny": {"frames": 8, "hw": 16, "dim": 64, "depth": 2, "d_channels": 8},
    "small": {"frames": 16, "hw": 32, "dim": 256, "depth": 6, "d_channels": 32},
}


def build(ctx: DistContext, *, size: str, seed: int, objective: str = "afd") -> tuple[StudentUpdater, DiscriminatorUpdater]:
    """Identically initialised student and D updaters on this rank (DDP re-broadcasts rank 0's weights anyway)."""
    z = SIZES[size]
    torch.manual_seed(seed)
    student = TinyCausalStudent(height=z["hw"], width=z["hw"], chunk_frames=4, patch_size=8, dim=z["dim"],
                                depth=z["depth"], heads=4, mlp_ratio=2.0, text_dim=TEXT_DIM).to(ctx.device)
    d = TinyVideoDiscriminator(text_dim=TEXT_DIM, channels=z["d_channels"], depth=2).to(ctx.device)
    s_upd = StudentUpdater(student, objective=objective, lr=1e-3, chunk_frames=4, dist=ctx)  # type: ignore[arg-type]
    d_upd = DiscriminatorUpdater(d, lr=1e-3, grad_clip=1.0, dist=ctx)
    return s_upd, d_upd


def global_batch(seed: int, step: int, batch: int, size: str, device: torch.device) -> PairBatch:
    """Step `step`'s whole learner batch: K = 2 rollouts per prompt, clips in [-1, 1]."""
    z = SIZES[size]
    g = step_generator(seed, step, "replica-batch")
    shape = (batch, 3, z["frames"], z["hw"], z["hw"])
    prompts = [f"prompt-{step}-{i // 2}" for i in range(batch)]
    text = torch.randn(batch // 2, TEXT_DIM, generator=g).repeat_interleave(2, dim=0)
    return PairBatch(prompt_ids=prompts, prompts=prompts, text=text.to(device),
                     teacher=(torch.rand(shape, generator=g) * 2 - 1).to(device),
                     student=(torch.rand(shape, generator=g) * 2 - 1).to(device))


def rows(b: PairBatch, ctx: DistContext) -> PairBatch:
    """This rank's block of a global batch (what `ShardedFeed` delivers to it)."""
    r = ctx.shard(b.size)
    return PairBatch(prompt_ids=b.prompt_ids[r], prompts=b.prompts[r], text=b.text[r], teacher=b.teacher[r],
                     student=b.student[r])


def _mean_over_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    if not ctx.distributed:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def train(ctx: DistContext, *, steps: int, batch: int, size: str, seed: int,
          resume: Optional[Path] = None, save: Optional[Path] = None, save_at: Optional[int] = None) -> dict[str, Any]:
    """Steps `[start, steps)`; returns per-step losses and times (rank-averaged) and the final state.

    With `save`, rank 0 checkpoints both updaters once `save_at` steps are done (default: at the end).
    """
    s_upd, d_upd = build(ctx, size=size, seed=seed)
    if resume is not None:
        state = torch.load(resume, map_location=ctx.device, weights_only=False)
        s_upd.load_state_dict(state["student"])
        d_upd.load_state_dict(state["d"])
    log: list[dict[str, float]] = []
    for step in range(s_upd.steps, steps):
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        t0 = time.perf_counter()
        b = rows(global_batch(seed, step, batch, size, ctx.device), ctx)
        dm = d_upd.step(b)
        scores = d_upd.score(b.student_rgb, b.text, prompts=b.prompts)
        sm = s_upd.step(b, scores=scores, generator=step_generator(seed, step, "train", ctx.device))
        s_upd.publish()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        seconds = time.perf_counter() - t0
        log.append({"step": float(step), **_mean_over_ranks(
            {"d_loss": dm["d_loss"], "student_loss": sm["student_loss"], "nft_loss": sm["nft_loss"],
             "seconds": seconds}, ctx)})
        if save is not None and ctx.is_main and s_upd.steps == (save_at or steps):
            torch.save({"student": s_upd.state_dict(), "d": d_upd.state_dict()}, save)
    return {"log": log, "state": {"student": s_upd.state_dict(), "d": d_upd.state_dict()}}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for rank 0's result.json and final.pt")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8, help="global learner batch (a multiple of the world size)")
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=["auto", "nccl", "gloo"], default="auto")
    ap.add_argument("--ddp-one", action="store_true", help="under torchrun with one rank: still use a process group + DDP")
    ap.add_argument("--resume", type=Path, default=None)
    ap.add_argument("--save", type=Path, default=None, help="write a checkpoint (rank 0) after step --save-at")
    ap.add_argument("--save-at", type=int, default=None, help="steps done when --save is written (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ctx = init_distributed(args.backend, timeout_s=120, group_of_one=args.ddp_one)
    try:
        result = train(ctx, steps=args.steps, batch=args.batch, size=args.size, seed=args.seed,
                       resume=args.resume, save=args.save, save_at=args.save_at)
        if ctx.is_main:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "result.json").write_text(json.dumps(
                {"world_size": ctx.world_size, "backend": ctx.backend, "device": str(ctx.device), "log": result["log"]}))
            torch.save(result["state"], args.out / "final.pt")
        if ctx.distributed:  # leave together: a rank tearing gloo down while rank 0 still writes aborted once
            dist.barrier()   # ("terminate called without an active exception", a loaded fresh-clone run)
    finally:
        shutdown_distributed(ctx)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
