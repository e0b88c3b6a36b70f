"""What can the student architecture learn of the teacher's physics with *supervised* data? (issue 15, the ceiling)

The oracle row of the quality benchmark (the NFT update with the true physics score as its reward) gains
nothing over the base, and a synthetic reward shows the update itself follows a reward it can reach
(`--sanity`, below). So the open question is the student: can this architecture, given the teacher's own
clips, show the teacher's physics at all? Each variant is pretrained with `afd pretrain` (teacher-forced flow
matching on renderer clips, the recipe of the shipped base) and scored on the quality benchmark's eval set
(`benchmarks/quality/scoring.py`: 40 held-out prompts, nearest of 4 truths, fixed rollout noise per seed):

    base          the shipped pretrained student (weakened physics, 6000 steps x 32). Since 2026-12-07 it is
                  base_hash below (the PretrainConfig defaults); the rows down to words_true were measured
                  against the one before, whose recipe OLD_DATA / OLD_STUDENT keep them on
    sft_true      base fine-tuned on the *true* physics (3000 steps x 32, lr 1e-4): supervised distillation
                  with 96k teacher clips, 100x the quality_gpu budget
    scratch_weak  the base's recipe again (at `--scale` < 1: the same budget as the other rows)
    scratch_true  the base's recipe from scratch on the true physics: what this architecture reaches at best
    wide_weak     a wider student (patch 4: 64 tokens per frame, not 16; dim 192, depth 6) on weakened physics
    wide_true     the wider student on the true physics
    hash_weak     the base's recipe with `text.kind=hash` (a bag of words: each colour and shape word its own
                  random direction) in place of MiniLM's pooled sentence embedding, on weakened physics
    hash_true     the same on the true physics
    long_weak     hash_weak at 10,000 steps: the control of the grammar rows (same steps, the 200 shipped prompts)
    grammar_weak  hash_weak at 10,000 steps on 10,000 scenes drawn from the grammar (eval scenes held out) in
                  place of the 200 shipped prompts: each colour, shape and start seen in many combinations
    grammar_true  the same on the true physics
    wide_grammar_weak / wide_grammar_true   the wider student on the grammar scenes (6000 steps)
    words_weak    long_weak with per-word tokens (`text.kind=words`) read by cross-attention in every block
    words_true    the same on the true physics
    tokens_weak   grammar_weak with the prompt vector also added to every patch token (`student.text_to_tokens`):
                  the path on which `colour_overfit.py` paints each prompt's colour in 1000 steps (adaLN: never)
    tokens_true   the same on the true physics
    tokens_x0_weak / tokens_x0_true   tokens_* with the x0 loss (`pretrain.loss=x0`: every noise level weighs alike)
    base_hash     the candidate new base: tokens_x0_weak at the base's 6000 steps (cosine schedule run to its end)
    base_minilm   the same with MiniLM's sentence embedding (the default text encoder) in place of the bag of words

The base gets colours, shapes and start positions of the prompt's objects wrong (a yellow block rendered as an
orange ball, a white square as a green smear), so the physics score cannot find them (detected ~0.5). The hash
rows test whether that is the sentence embedding (every prompt of this grammar lies close to every other in
MiniLM's space) rather than the network. Every row also gets the colour probe (`colour_probe`): does its
prediction from pure noise paint the prompt's colour where the teacher's object is? (2026-12-07: no adaLN-only row
does; the token-path rows do, 0.79-1.00.)

Rows are compared with the base by paired bootstrap over (seed, prompt) cells. A variant below the base and
below `static` (1.0) says the architecture can show the physics and the RL update is what fails; a variant at
the base says the student itself is the bound. Writes `benchmarks/results/student_capacity_<tag>.{json,md}`.

    python benchmarks/student_capacity.py --device cuda --jobs 4 --train-only --work W   # on a GPU machine
    python benchmarks/student_capacity.py --work W --score-only                           # score here (CPU)
    python benchmarks/student_capacity.py --sanity                                       # the update follows an easy reward
    python benchmarks/student_capacity.py --scale 0.05 --variants sft_true                # wiring check on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent / "quality"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from afd_async.config import load_config  # noqa: E402
from afd_async.eval.bootstrap import bootstrap_mean, paired_difference  # noqa: E402
from afd_async.models.factory import make_text_encoder  # noqa: E402
from artefacts import write_clip_grid  # noqa: E402
from scoring import QualityScorer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRUE_PHYSICS = [f"pretrain.{k}_scale=[1,1]" for k in ("gravity", "restitution", "friction", "speed")]
WIDE = ["student.patch_size=4", "student.dim=192", "student.depth=6", "student.heads=6"]
WORDS = ["text.kind=words", "student.cross_attention=true"]  # per-word tokens, cross-attention in every block
GRAMMAR = ["pretrain.num_prompts=10000", "pretrain.seeds_per_prompt=1"]  # 10,000 scenes, eval's held out
TOKENS = ["text.kind=hash", "student.text_to_tokens=true"]  # the prompt also added to every patch token
# The recipe of the base shipped before 2026-12-07 (and of every row measured against it): 200 prompts x 6 physics
# draws, the v loss, MiniLM, adaLN only. Today's defaults are the new base's recipe (tokens, x0, 10,000 scenes).
OLD_DATA = ("pretrain.num_prompts=null", "pretrain.seeds_per_prompt=6", "pretrain.loss=v")
OLD_STUDENT = ("text.kind=minilm", "student.text_to_tokens=false")


@dataclass(frozen=True)
class Variant:
    """One pretraining recipe: `afd pretrain` overrides, steps at `--scale 1`, and the student's architecture."""

    name: str
    steps: int
    overrides: tuple[str, ...]
    student: tuple[str, ...] = ()  # architecture and text overrides: used for pretraining *and* scoring


VARIANTS = {
    v.name: v
    for v in (
        Variant("sft_true", 3000, ("pretrain.init=pretrained", "pretrain.lr=1e-4", "pretrain.warmup_steps=50",
                                   *TRUE_PHYSICS)),
        Variant("scratch_weak", 6000, OLD_DATA, OLD_STUDENT),
        Variant("scratch_true", 6000, (*OLD_DATA, *TRUE_PHYSICS), OLD_STUDENT),
        Variant("wide_weak", 6000, OLD_DATA, (*OLD_STUDENT, *WIDE)),
        Variant("wide_true", 6000, (*OLD_DATA, *TRUE_PHYSICS), (*OLD_STUDENT, *WIDE)),
        Variant("hash_weak", 6000, OLD_DATA, (*OLD_STUDENT, "text.kind=hash")),
        Variant("hash_true", 6000, (*OLD_DATA, *TRUE_PHYSICS), (*OLD_STUDENT, "text.kind=hash")),
        Variant("long_weak", 10000, OLD_DATA, (*OLD_STUDENT, "text.kind=hash")),
        Variant("grammar_weak", 10000, (*OLD_DATA, *GRAMMAR), (*OLD_STUDENT, "text.kind=hash")),
        Variant("grammar_true", 10000, (*OLD_DATA, *GRAMMAR, *TRUE_PHYSICS), (*OLD_STUDENT, "text.kind=hash")),
        Variant("wide_grammar_weak", 6000, (*OLD_DATA, *GRAMMAR), (*OLD_STUDENT, "text.kind=hash", *WIDE)),
        Variant("wide_grammar_true", 6000, (*OLD_DATA, *GRAMMAR, *TRUE_PHYSICS), (*OLD_STUDENT, "text.kind=hash", *WIDE)),
        Variant("words_weak", 10000, OLD_DATA, (*OLD_STUDENT, *WORDS)),
        Variant("words_true", 10000, (*OLD_DATA, *TRUE_PHYSICS), (*OLD_STUDENT, *WORDS)),
        Variant("tokens_weak", 10000, (*GRAMMAR, "pretrain.loss=v"), tuple(TOKENS)),
        Variant("tokens_true", 10000, (*GRAMMAR, *TRUE_PHYSICS, "pretrain.loss=v"), tuple(TOKENS)),
        Variant("tokens_x0_weak", 10000, (*GRAMMAR, "pretrain.loss=x0"), tuple(TOKENS)),
        Variant("tokens_x0_true", 10000, (*GRAMMAR, *TRUE_PHYSICS, "pretrain.loss=x0"), tuple(TOKENS)),
        Variant("base_hash", 6000, (*GRAMMAR, "pretrain.loss=x0"), tuple(TOKENS)),
        Variant("base_minilm", 6000, (*GRAMMAR, "pretrain.loss=x0"), ("text.kind=minilm", "student.text_to_tokens=true")),
    )
}


def pretrain_command(v: Variant, work: Path, scale: float, device: str, extra: Sequence[str] = ()) -> list[str]:
    steps = max(1, round(v.steps * scale))
    return [sys.executable, "-m", "afd_async.cli", "pretrain", *v.overrides, *v.student, f"pretrain.steps={steps}",
            "pretrain.batch_size=32", "pretrain.log_every=100", f"pretrain.output={work / v.name}.safetensors",
            f"train.device={device}", *extra]


def train(variants: Sequence[Variant], work: Path, *, scale: float, device: str, jobs: int,
          extra: Sequence[str] = (), deadline_s: Optional[float] = None) -> dict[str, Optional[float]]:
    """Pretrain every variant, `jobs` processes at a time; returns each one's seconds (None: stopped at the
    deadline, no checkpoint). A failed one stops the run: its log says why."""
    work.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 2) // max(1, jobs))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.monotonic()
    pending, running = list(variants), {}
    seconds: dict[str, Optional[float]] = {}
    while pending or running:
        while pending and len(running) < jobs:
            v = pending.pop(0)
            log = (work / f"{v.name}.log").open("w")
            running[v.name] = (subprocess.Popen(pretrain_command(v, work, scale, device, extra), stdout=log,
                                                stderr=subprocess.STDOUT, env=env, cwd=ROOT), time.monotonic(), log)
        for name, (proc, t0, log) in list(running.items()):
            rc = proc.poll()
            late = deadline_s is not None and time.monotonic() - start > deadline_s
            if rc is None and not late:
                continue
            if rc is None:  # the call's time is up: SIGINT makes `afd pretrain` save the steps it took
                proc.send_signal(signal.SIGINT)
                try:
                    rc = proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                pending.clear()
            del running[name]
            log.close()
            seconds[name] = None if rc is None else round(time.monotonic() - t0, 1)
            if rc:
                raise SystemExit(f"pretrain {name} failed (exit {rc}): see {work / name}.log")
            print(f"{name}: {'killed at the deadline, no checkpoint' if rc is None else f'trained in {seconds[name]} s'}"
                  f"{' (stopped at the deadline)' if late else ''}", flush=True)
        time.sleep(0.5)  # polling child processes, not synchronising a test
    return seconds


def pretrain_meta(path: Path) -> dict:
    """What `afd pretrain` recorded in the checkpoint (steps, batch, physics ranges, init)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("meta", "{}")).get("pretrain", {})


def score(names: Sequence[str], work: Path, *, seeds: Sequence[int], prompts: int,
          grid: Optional[Path] = None, grid_prompts: int = 6) -> dict:
    """Every variant (and the base) scored per (seed, prompt) cell at 1x and 2x, paired with the base; with
    `grid`, the first seed's 1x clips of the first `grid_prompts` prompts side by side with the teacher's."""
    cfg = load_config(["experiment=quality_gpu"])
    scorer = QualityScorer(cfg, eval_prompts=prompts, long_factor=2, gt_seeds=4)
    cells: dict[str, dict[str, np.ndarray]] = {}
    rows: dict[str, dict] = {}
    minilm_text = scorer.text
    columns = [scorer.horizons[0].teacher[:grid_prompts]]
    for name in ["base", *names]:
        student = scorer.load_student(None if name == "base" else work / f"{name}.safetensors")
        text_overrides = [o for o in (VARIANTS[name].student if name in VARIANTS else ()) if o.startswith("text.")]
        scorer.text = (make_text_encoder(load_config(text_overrides).text).encode(scorer.prompts) if text_overrides
                       else minilm_text)  # the variant is conditioned as it was trained
        rows[name] = {"params": sum(p.numel() for p in student.parameters()),
                      "pretrain": None if name == "base" else pretrain_meta(work / f"{name}.safetensors"),
                      "colour_t1": colour_probe(student, scorer.prompts, scorer.text, scorer.horizons[0].teacher)}
        for h in scorer.horizons:
            scored = [scorer.score(scorer.rollouts(student, h.num_frames, seed=s), h) for s in seeds]
            per_seed = [sc.scores for sc in scored]
            if h is scorer.horizons[0]:
                columns.append(scored[0].videos[:grid_prompts])
            phys = np.array([[c.physics_score for c in sc] for sc in per_seed])
            cells.setdefault(name, {})[h.name] = phys
            ci = bootstrap_mean(phys)
            rows[name][h.name] = {
                "physics": {"mean": ci.mean, "ci_low": ci.lo, "ci_high": ci.hi},
                "detected": float(np.mean([[c.detection_rate for c in sc] for sc in per_seed])),
                "motion_ratio": float(np.mean([[c.motion_magnitude for c in sc] for sc in per_seed])) / h.motion_ref,
            }
            if name != "base":
                d = paired_difference(phys, cells["base"][h.name])
                rows[name][h.name]["minus_base"] = {"mean": d.mean, "ci_low": d.lo, "ci_high": d.hi}
        print(f"scored {name}: {rows[name]['1x']['physics']['mean']:.3f}", flush=True)
    if grid is not None:
        write_clip_grid(columns, ["teacher", "base", *names], scorer.fps, grid)
    return rows


def colour_probe(student: torch.nn.Module, prompts: Sequence[str], text: torch.Tensor, teacher: torch.Tensor,
                 *, noise_draws: int = 4) -> dict:
    """Does the student read the colour word? Its x0 prediction from pure noise (t = 1, the first denoising step
    of a rollout, where nothing but the prompt says what to draw), averaged over `noise_draws` noises, is read
    inside the teacher's object pixels of frame 0 for every one-object prompt: a hit when the palette colour
    nearest in hue (direction from the background colour) is the prompt's colour (chance 1/8; the teacher's own
    frame scores `teacher_hit_rate`, the probe's ceiling). After this step the noisy sample itself carries a
    colour, so a student that misses here paints whatever colour its first noise suggested.

    Args:
        teacher: `(N, 3, F, H, W)` teacher clips of `prompts` in [-1, 1] (the scorer's, seed 0).
    """
    from afd_async.physics import PALETTE, parse_prompt
    from afd_async.physics.scene import BACKGROUND_RGB, GROUND_RGB

    names = list(PALETTE)
    bg = torch.tensor(BACKGROUND_RGB, dtype=torch.float32)
    hue = torch.nn.functional.normalize(torch.tensor([PALETTE[n] for n in names], dtype=torch.float32) - bg, dim=1)
    furniture = torch.tensor([BACKGROUND_RGB, GROUND_RGB], dtype=torch.float32)

    def nearest(rgb: torch.Tensor) -> str:
        """The palette colour in the direction of `rgb` from the background: a dim (blurred) object keeps its hue."""
        return names[int((hue @ torch.nn.functional.normalize(rgb - bg, dim=0)).argmax())]

    hits, teacher_hits, colours = [], [], []
    p = next(student.parameters())
    for i, prompt in enumerate(prompts):
        scene = parse_prompt(prompt)
        if len(scene.objects) != 1:
            continue
        frame = (teacher[i, :, 0].permute(1, 2, 0) + 1) * 127.5  # (H, W, 3) in 0..255
        mask = torch.cdist(frame.reshape(-1, 3), furniture).amin(1).reshape(frame.shape[:2]) > 60
        if mask.sum() < 2:
            continue
        g = torch.Generator().manual_seed(1000 + i)
        noise = torch.randn((noise_draws, *teacher.shape[1:]), generator=g).to(p.device, p.dtype)
        t = torch.ones(noise_draws, teacher.shape[2] // student.chunk_frames, device=p.device, dtype=p.dtype)
        with torch.no_grad():
            words = text[i : i + 1].expand(noise_draws, *text.shape[1:]).to(p.device, p.dtype)
            x0 = noise - student(noise, t, words, torch.zeros_like(noise))
        pred = ((x0.mean(0)[:, 0].clamp(-1, 1).permute(1, 2, 0).float().cpu() + 1) * 127.5)[mask].mean(0)
        hits.append(nearest(pred) == scene.objects[0].colour)
        teacher_hits.append(nearest(frame[mask].mean(0)) == scene.objects[0].colour)
        colours.append((scene.objects[0].colour, pred.round().tolist(), frame[mask].mean(0).round().tolist()))
    return {"hit_rate": float(np.mean(hits)) if hits else None, "prompts": len(hits),
            "teacher_hit_rate": float(np.mean(teacher_hits)) if teacher_hits else None,
            "colours": colours}  # per prompt: (its colour, predicted mean RGB, teacher mean RGB) in the object's pixels


def sanity(steps: int = 30) -> dict[str, list[float]]:
    """The NFT update on an easy reward (mean brightness of the student clip, +1 or −1) against a null twin.

    If the update follows this reward and not the true physics score, the update is not the bug: the physics
    reward is what the student cannot reach. Returns the mean brightness of fixed eval rollouts per 5 steps."""
    from afd_async.testing.rewards import Brightness
    from afd_async.train.objectives import register
    from afd_async.train.sync_loop import SyncLoop

    out: dict[str, list[float]] = {}
    for label, sign, extra in (("reward +brightness", 1.0, []), ("reward −brightness", -1.0, []),
                               ("null (no signal)", 1.0, ["algo.adv_clip=1e6"])):
        register(Brightness(name="capacity_brightness", sign=sign), replace=True)
        cfg = load_config(["experiment=quality_cpu", "algo.name=capacity_brightness", "train.eval_every=1000",
                           "algo.rollouts_per_prompt=2", f"train.steps={steps}",
                           "train.output_dir=outputs/capacity_sanity", *extra])
        loop = SyncLoop(cfg)
        loop.warmup_d()
        curve = [loop.make_batch(10_000, "eval").student_rgb.float().mean().item()]
        for i in range(steps):
            loop.step()
            if (i + 1) % 5 == 0:
                curve.append(loop.make_batch(10_000, "eval").student_rgb.float().mean().item())
        out[label] = curve
        print(f"{label:>20}: {curve[0]:.4f} -> {curve[-1]:.4f}", flush=True)
    return out


def _ci(x: Optional[dict], sign: str = "+") -> str:
    """`mean [low, high]` of an interval record, `–` for none."""
    return "–" if x is None else f"{x['mean']:{sign}.3f} [{x['ci_low']:{sign}.3f}, {x['ci_high']:{sign}.3f}]"


def _colour(c: Optional[dict]) -> str:
    return "–" if not c or c.get("hit_rate") is None else f"{c['hit_rate']:.2f} of {c['prompts']}"


def markdown(rows: dict, meta: dict) -> str:
    lines = [f"# Student capacity (issue 15), {meta['device']}, {len(meta['seeds'])} seeds x {meta['prompts']} prompts",
             "", f"`{meta['command']}` at {meta['commit']}. Physics score: 0 the truth, 1 a clip without motion; "
             "teacher 0.072, static 1.000 (`physics_score_references.json`).", "",
             "| variant | params | pretraining steps x 32, prompts | physics 1x [95% CI] | − base 1x [paired CI] | physics 2x "
             "| − base 2x | detected 1x | motion/T 1x | colour word read at t=1 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        one, two = r["1x"], r["2x"]
        pre = r["pretrain"]
        steps = "6000, 200 prompts (shipped)" if pre is None else f"{pre.get('steps')}, {pre.get('prompts', 200)} prompts"
        lines.append(f"| {name} | {r['params'] / 1e6:.2f} M | {steps} | {_ci(one['physics'], '')} | "
                     f"{_ci(one.get('minus_base'))} | {two['physics']['mean']:.3f} | {_ci(two.get('minus_base'))} | "
                     f"{one['detected']:.2f} | {one['motion_ratio']:.2f} | {_colour(r.get('colour_t1'))} |")
    if meta.get("sanity"):
        lines += ["", "Sanity: the NFT update on an easy reward (mean brightness of fixed eval rollouts, every 5 steps):",
                  ""]
        lines += [f"- {k}: " + " → ".join(f"{x:.4f}" for x in v) for k, v in meta["sanity"].items()]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("outputs/capacity"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of each variant's steps (wiring checks)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="pretraining processes at once")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="stop pretraining runs still going after this many seconds (a device call's limit)")
    ap.add_argument("--score-only", action="store_true")
    ap.add_argument("--sanity", action="store_true", help="also run the easy-reward check of the update (~1 min)")
    ap.add_argument("--override", action="append", default=[],
                    help="a Hydra override for every pretraining run, e.g. text.cache_dir=... on a machine without MiniLM")
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--commit", default=None)
    args = ap.parse_args(argv)
    variants = [VARIANTS[n] for n in args.variants]
    meta = {"command": " ".join(["python benchmarks/student_capacity.py", *(argv or sys.argv[1:])]),
            "commit": args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                    text=True, cwd=ROOT).stdout.strip(),
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "seeds": args.seeds,
            "prompts": args.prompts, "scale": args.scale,
            "steps": {v.name: max(1, round(v.steps * args.scale)) for v in variants}}
    if args.score_only and (args.work / "train.json").is_file():  # written where they were trained (a GPU machine)
        meta["trained"] = json.loads((args.work / "train.json").read_text())
    if not args.score_only:
        meta["train_seconds"] = train(variants, args.work, scale=args.scale, device=args.device, jobs=args.jobs,
                                      extra=args.override, deadline_s=args.deadline_s)
        (args.work / "train.json").write_text(json.dumps(meta, indent=2))
    if args.train_only:
        return 0
    if args.sanity:
        meta["sanity"] = sanity()
    out = ROOT / "benchmarks" / "results" / f"student_capacity_{args.tag}"
    done = [v.name for v in variants if (args.work / f"{v.name}.safetensors").is_file()]
    rows = score(done, args.work, seeds=args.seeds, prompts=args.prompts,
                 grid=out.with_name(out.name + "_grid"))
    out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
