"""Can the tiny student draw an object from its prompt alone? (issue 15; a check, not a speed benchmark)

Eight prompts that differ only in the colour word ("a red ball rolls left slowly", ...), one clip each, are fit
by the pretraining loss from a fresh student. Every 100 steps `student_capacity.colour_probe` (the column of
every capacity row) reads the student's x0 prediction from pure noise (t = 1: the first denoising step of a
rollout, where only the prompt says what to draw), averaged over 4 noises, inside the teacher's object pixels
of frame 0. A hit is the palette colour nearest in hue (direction
from the background) being the prompt's colour: chance 1/8, the teacher's own frame 8/8. The last probe prints
each prompt's predicted and teacher mean colour in that region.

    python benchmarks/colour_overfit.py --steps 300                      # MiniLM, the pretraining (v-space) loss
    python benchmarks/colour_overfit.py --steps 300 --loss x0            # the same error in x0 units
    python benchmarks/colour_overfit.py --text-kind words --steps 300    # word tokens + cross-attention
"""

from __future__ import annotations

import argparse
import time

import torch

from afd_async.algo.losses import flow_matching_loss, noise_to
from afd_async.config import load_config
from afd_async.models.factory import make_text_encoder, student_kwargs
from afd_async.models.schedule import sample_t
from afd_async.models.tiny_student import TinyCausalStudent
from afd_async.physics import PALETTE
from afd_async.train.teacher_source import make_teacher_source
from student_capacity import colour_probe  # the probe of every student_capacity row (this script's folder)

NAMES = list(PALETTE)


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
            model.eval()
            probe = colour_probe(model, prompts, text, clips)
            model.train()
            print(f"{args.text_kind}, {args.loss} loss, step {step}: colour hit at t=1 {probe['hit_rate']:.2f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
            if step == args.steps:
                for name, pred, want in probe["colours"]:
                    print(f"  {name:7s} predicted {pred}  teacher {want}")
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
