"""Can the tiny student draw an object from its prompt alone? (issue 15; a check, not a speed benchmark)

Eight prompts that differ only in the colour word ("a red ball rolls left slowly", ...), one clip each, are fit
by the pretraining loss from a fresh student. Every 100 steps `student_capacity.colour_probe` (the column of
every capacity row) reads the student's x0 prediction from pure noise (t = 1: the first denoising step of a
rollout, where only the prompt says what to draw), averaged over 4 noises, inside the teacher's object pixels
of frame 0. A hit is the palette colour nearest in hue (direction
from the background) being the prompt's colour: chance 1/8, the teacher's own frame 8/8. The last probe prints
each prompt's predicted and teacher mean colour in that region.

    python benchmarks/colour_overfit.py --steps 1000                     # today's student: the prompt on the token path
    python benchmarks/colour_overfit.py --steps 1000 --set student.text_to_tokens=false  # adaLN only: never
    python benchmarks/colour_overfit.py --steps 1000 --loss x0           # the pretraining's loss (x0 units)
    python benchmarks/colour_overfit.py --text-kind words --steps 300 --set student.text_to_tokens=false  # cross-attn
    python benchmarks/colour_overfit.py --device cuda --steps 3000 --json out.json --set ...   # one row of a sweep
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from afd_async.algo.losses import flow_matching_loss, noise_to, x0_matching_loss
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
    ap.add_argument("--text-kind", default="hash", choices=["minilm", "hash", "words"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--loss", default="v", choices=["v", "x0"], help="v: flow matching; x0: times t^2 (pretraining's)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--every", type=int, default=100, help="probe every this many steps")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (student.*)")
    ap.add_argument("--json", help="write the probe curve here")
    args = ap.parse_args()
    cfg = load_config([f"text.kind={args.text_kind}"]
                      + (["student.cross_attention=true"] if args.text_kind == "words" else []) + args.set)
    enc = make_text_encoder(cfg.text)
    prompts = [f"a {c} ball rolls left slowly" for c in NAMES]
    text = enc.encode(prompts).to(args.device)
    clips = make_teacher_source(cfg).batch(prompts, [0] * len(prompts)).to(args.device)
    torch.manual_seed(0)
    model = TinyCausalStudent(**student_kwargs(cfg.student, enc.dim)).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    s, g, t0 = cfg.student, torch.Generator().manual_seed(0), time.time()
    curve = []
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            model.eval()
            probe = colour_probe(model, prompts, text, clips.cpu())
            model.train()
            curve.append({"step": step, "hit_rate": probe["hit_rate"], "s": round(time.time() - t0, 1)})
            print(f"{args.text_kind}, {args.loss} loss, {' '.join(args.set)} step {step}: colour hit at t=1 "
                  f"{probe['hit_rate']:.2f} ({time.time() - t0:.0f} s)", flush=True)
            if step == args.steps:
                for name, pred, want in probe["colours"]:
                    print(f"  {name:7s} predicted {pred}  teacher {want}")
        if step == args.steps:
            break
        idx = torch.randint(0, len(prompts), (args.batch,), generator=g).to(args.device)
        x0 = clips[idx]
        t = sample_t((args.batch, s.num_frames // s.chunk_frames), mode=cfg.algo.t_sampling, timesteps=s.timesteps,
                     shift=s.shift, generator=g).to(args.device)
        eps = torch.randn(x0.shape, generator=g).to(args.device)
        v = model(noise_to(x0, t, eps), t, text[idx], x0)
        loss = x0_matching_loss(v, x0, eps, t) if args.loss == "x0" else flow_matching_loss(v, x0, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"text_kind": args.text_kind, "loss": args.loss, "lr": args.lr, "set": args.set,
                       "batch": args.batch, "device": args.device, "curve": curve,
                       "colours": probe["colours"]}, f, indent=1)


if __name__ == "__main__":
    main()
