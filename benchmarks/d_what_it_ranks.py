"""What a discriminator's score follows on fresh student rollouts (issue 15.2: ρ(D, −true error) stays near 0).

    python benchmarks/d_what_it_ranks.py --d outputs/run/discriminator_final.safetensors [--d pretrained_d ...]

Rolls the shipped base student out on the eval prompts (two noise seeds a prompt; rollouts no D has seen) and
prints, for each D, Spearman's ρ between its score and each clip property: minus the true physics error (what
AFD needs), the same within each prompt (D's score and the error centred on their prompt's mean: what a
K-rollout advantage ranks), pixel motion (mean |frame difference|), sharpness (mean |spatial gradient|),
brightness, and how often D scores a rollout above the same clip with its frames shuffled (does D read event order
on student clips too). A D that tracks motion energy or sharpness more than the error rewards those instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from afd_async.algo.negatives import shuffle_frames  # noqa: E402
from afd_async.config import load_config  # noqa: E402
from afd_async.config.prompts import eval_prompts  # noqa: E402
from afd_async.eval.d_probes import spearman  # noqa: E402
from afd_async.models.factory import make_discriminator, make_student, make_text_encoder  # noqa: E402
from afd_async.train.oracle_reward import make_oracle_reward  # noqa: E402


def clip_properties(video: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-clip scalars `(N,)` of clips `(N, 3, F, H, W)` in [-1, 1]."""
    return {
        "pixel motion": video.diff(dim=2).abs().mean(dim=(1, 2, 3, 4)),
        "sharpness": (video.diff(dim=3).abs().mean(dim=(1, 2, 3, 4)) + video.diff(dim=4).abs().mean(dim=(1, 2, 3, 4))),
        "brightness": video.mean(dim=(1, 2, 3, 4)),
    }


def centred(values: torch.Tensor, seeds: int) -> torch.Tensor:
    """`values` of seed-major rollouts (`seeds` blocks of the same prompts) minus each prompt's mean."""
    v = values.double().reshape(seeds, -1)
    return (v - v.mean(dim=0, keepdim=True)).reshape(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", action="append", required=True, help="a discriminator checkpoint (path or pretrained_d)")
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=4, help="rollouts a prompt (the quality GPU size's K)")
    ap.add_argument("--override", action="append", default=[], help="Hydra overrides for the student and text")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.override)
    enc = make_text_encoder(cfg.text)
    prompts = [p.prompt for p in eval_prompts(cfg)[: args.prompts]]
    text = enc.encode(prompts)
    s = cfg.student
    student = make_student(s, enc.dim, text_kind=cfg.text.kind).eval()
    videos, names, texts = [], [], []
    with torch.no_grad():
        for seed in range(args.seeds):
            g = torch.Generator().manual_seed(10_000 + seed)
            videos.append(student.rollout(text, generator=g, timesteps=s.timesteps, shift=s.shift,
                                          num_frames=s.num_frames))
            names += prompts
            texts.append(text)
    video, text_all = torch.cat(videos), torch.cat(texts)
    errors = torch.as_tensor(make_oracle_reward(cfg).errors(video, names))
    props = {"−true error": -errors, **clip_properties(video)}
    print(f"{len(names)} base-student rollouts ({args.prompts} eval prompts x {args.seeds} seeds); "
          "Spearman ρ(D score, property):")
    print(f"{'D':>48}  " + "  ".join(f"{k:>13}" for k in ["−true error", "within prompt", *list(props)[1:]])
          + "  D(real) > D(shuffled)")
    for ckpt in args.d:
        d = make_discriminator(dataclasses.replace(cfg.discriminator, checkpoint=ckpt), enc.dim,
                               text_kind=cfg.text.kind).eval()
        with torch.no_grad():
            score = d.score(video, prompts=names, text=text_all)
            shuffled = d.score(shuffle_frames(video, torch.Generator().manual_seed(0)), prompts=names, text=text_all)
        rhos = [spearman(score.numpy(), v.numpy()) for v in props.values()]
        within = spearman(centred(score, args.seeds).numpy(), centred(-errors, args.seeds).numpy())
        rhos.insert(1, within)
        order = float((score > shuffled).float().mean())
        print(f"{ckpt[-48:]:>48}  " + "  ".join(f"{r:>+13.2f}" for r in rhos) + f"  {order:>21.2f}")


if __name__ == "__main__":
    main()
