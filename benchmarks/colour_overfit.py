"""Can the tiny student draw an object from its prompt alone? (issue 15; a check, not a speed benchmark)

Eight prompts that differ only in the colour word ("a red ball rolls left slowly", ...), one clip each, are fit
by the pretraining loss from a fresh student. Every 100 steps the student's x0 prediction from pure noise
(t = 1: the first denoising step of a rollout, where only the prompt says what to draw), averaged over 4 noises,
is read inside the teacher's object pixels of frame 0. A hit is the palette colour nearest in hue (direction
from the background) being the prompt's colour: chance 1/8, the teacher's own frame 8/8. The last probe prints
each prompt's predicted and teacher mean colour in that region.

    python benchmarks/colour_overfit.py --steps 300                      # MiniLM, the pretraining (v-space) loss
    python benchmarks/colour_overfit.py --steps 300 --loss x0            # the same error in x0 units
    python benchmarks/colour_overfit.py --text-kind words --steps 300    # word tokens + cross-attention
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from afd_async.algo.losses import flow_matching_loss, noise_to
from afd_async.config import load_config
from afd_async.models.factory import make_text_encoder, student_kwargs
from afd_async.models.schedule import sample_t
from afd_async.models.tiny_student import TinyCausalStudent
from afd_async.physics import PALETTE
from afd_async.physics.scene import BACKGROUND_RGB, GROUND_RGB
from afd_async.train.teacher_source import make_teacher_source

NAMES = list(PALETTE)
BG = torch.tensor(BACKGROUND_RGB, dtype=torch.float32)
HUE = torch.nn.functional.normalize(torch.tensor([PALETTE[n] for n in NAMES], dtype=torch.float32) - BG, dim=1)
FURNITURE = torch.tensor([BACKGROUND_RGB, GROUND_RGB], dtype=torch.float32)


def probe(model: TinyCausalStudent, clips: torch.Tensor, text: torch.Tensor, verbose: bool) -> float:
    model.eval()
    hits = []
    for i, name in enumerate(NAMES):
        frame = (clips[i, :, 0].permute(1, 2, 0) + 1) * 127.5
        mask = torch.cdist(frame.reshape(-1, 3), FURNITURE).amin(1).reshape(frame.shape[:2]) > 60
        noise = torch.randn((4, *clips.shape[1:]), generator=torch.Generator().manual_seed(i))
        t = torch.ones(4, clips.shape[2] // model.chunk_frames)
        with torch.no_grad():
            x0 = noise - model(noise, t, text[i : i + 1].expand(4, *text.shape[1:]), torch.zeros_like(noise))
        pred = ((x0.mean(0)[:, 0].clamp(-1, 1).permute(1, 2, 0) + 1) * 127.5)[mask].mean(0)
        hits.append(NAMES[int((HUE @ torch.nn.functional.normalize(pred - BG, dim=0)).argmax())] == name)
        if verbose:
            print(f"  {name:7s} predicted {pred.numpy().round(0)}  teacher {frame[mask].mean(0).numpy().round(0)}")
    model.train()
    return float(np.mean(hits))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text-kind", default="minilm", choices=["minilm", "hash", "words"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--loss", default="v", choices=["v", "x0"], help="v: the pretraining loss; x0: times t^2")
    args = ap.parse_args()
    cfg = load_config([f"text.kind={args.text_kind}"]
                      + (["student.cross_attention=true"] if args.text_kind == "words" else []))
    enc = make_text_encoder(cfg.text)
    prompts = [f"a {c} ball rolls left slowly" for c in NAMES]
    text = enc.encode(prompts)
    clips = make_teacher_source(cfg).batch(prompts, [0] * len(prompts))
    torch.manual_seed(0)
    model = TinyCausalStudent(**student_kwargs(cfg.student, enc.dim))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    s, g, t0 = cfg.student, torch.Generator().manual_seed(0), time.time()
    for step in range(args.steps + 1):
        if step % 100 == 0 or step == args.steps:
            hit = probe(model, clips, text, verbose=step == args.steps)
            print(f"{args.text_kind}, {args.loss} loss, step {step}: colour hit at t=1 {hit:.2f} ({time.time() - t0:.0f} s)",
                  flush=True)
        if step == args.steps:
            break
        idx = torch.randint(0, len(prompts), (args.batch,), generator=g)
        x0 = clips[idx]
        t = sample_t((args.batch, s.num_frames // s.chunk_frames), mode=cfg.algo.t_sampling, timesteps=s.timesteps,
                     shift=s.shift, generator=g)
        eps = torch.randn(x0.shape, generator=g)
        v = model(noise_to(x0, t, eps), t, text[idx], x0)
        if args.loss == "x0":
            tt = t.repeat_interleave(s.chunk_frames, dim=1)[:, None, :, None, None]
            loss = ((v - (eps - x0)) * tt).pow(2).mean()
        else:
            loss = flow_matching_loss(v, x0, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


if __name__ == "__main__":
    main()
