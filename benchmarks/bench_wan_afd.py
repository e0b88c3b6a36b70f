"""GPU benchmark: one full AFD step at the real 1.3B config through the wired training path, and
end-to-end rollout (transformer + VAE decode) variants.

Random weights at the real configs, bf16, batch 1, every model resident on one GPU at once:
the Wan student from `make_wan_student` (compile on, gradient checkpointing, VAE attached),
LoRA r=64 policies from `make_student_policies`, `StudentUpdater` / `DiscriminatorUpdater` as
`afd sync` and the learners use them, VideoReward (Qwen2-VL-2B + LoRA r=64).

Stages of one AFD step (DESIGN §2), timed with CUDA events after one warm-up step:
rollout (θ_old, KV cache, 81 frames) → VAE decode → D Bradley–Terry step on the pair →
D score of the student clip → NFT student step (v_θ, v_old, v_ref) + θ_old soft update.

Then end-to-end rollout FPS (θ_old rollout + decode to RGB): the transformer through the
merged θ_old copy vs through the LoRA adapters; the decode with diffusers' RMS norms vs the
fused ones (`models/wan/vae_fused.py`); back to back vs chunk-wise decode overlapped with
the next chunk's generation on a side stream (`models/wan/streaming.py`); a decode profile.

Usage (device): `python3 benchmarks/bench_wan_afd.py --out $OUT`; prints a table last,
writes `bench_wan_afd.json`.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from bench_wan import cuda_time as _cuda_time  # noqa: E402  (same folder; run as a script)


def cuda_time(fn, reps: int = 1):
    """CUDA-event timing on the GPU; wall clock on the CPU (the `--smoke` dry run)."""
    if torch.cuda.is_available():
        return _cuda_time(fn, reps)
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out

PROMPT = "a red ball falls from a table and bounces twice on the floor"


def build(dev: torch.device, overrides: list[str], backbone: Any = None, special: Any = None) -> dict[str, Any]:
    from afd_async.config import load_config
    from afd_async.models.factory import make_student_policies, make_wan_student
    from afd_async.models.videoreward.loaders import tiny_tokenizer
    from afd_async.models.videoreward.model import QWEN2_VL_2B, VideoRewardDiscriminator
    from afd_async.testing.wan_assets import QWEN_SPECIAL_REAL
    from afd_async.train.d_update import DiscriminatorUpdater
    from afd_async.train.student_update import StudentUpdater

    cfg = load_config(overrides)
    s, a = cfg.student, cfg.algo
    torch.backends.cudnn.benchmark = True
    student = make_wan_student(s, device=str(dev))
    upd = StudentUpdater(student, policies=make_student_policies(s, student, eval_ema=a.eval_ema), objective="afd",
                         lr=1e-5, beta=a.beta, lam_ref=a.lam_ref, adv_clip=a.adv_clip, grad_clip=a.grad_clip,
                         timesteps=s.timesteps, shift=s.shift, t_sampling=a.t_sampling, chunk_frames=s.chunk_frames)
    special = special or QWEN_SPECIAL_REAL
    tok = tiny_tokenizer(PROMPT.split() + "rate this generated video on three separate criteria".split(), special)
    vr = cfg.discriminator.videoreward
    with torch.device(dev):
        d = VideoRewardDiscriminator(tokenizer=tok, backbone=backbone or QWEN2_VL_2B, lora_rank=vr.lora_rank, lora_alpha=vr.lora_alpha,
                                     fps=s.fps, sample_fps=vr.sample_fps, max_pixels=vr.max_pixels,
                                     gradient_checkpointing=vr.gradient_checkpointing,
                                     dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32)
    d_upd = DiscriminatorUpdater(d, lr=5e-6, grad_clip=a.grad_clip)
    return dict(cfg=cfg, student=student, upd=upd, d_upd=d_upd, text_dim=student.transformer.config.text_dim)


def afd_step(m: dict[str, Any], dev: torch.device, res: dict[str, Any], key: str) -> None:
    from afd_async.train.batch import PairBatch

    cfg, upd, d_upd = m["cfg"], m["upd"], m["d_upd"]
    s = cfg.student
    text = torch.randn(1, s.wan.text_len, m["text_dim"], device=dev)  # UMT5 features (the encoder is not loaded here)
    teacher = torch.rand(1, 3, s.num_frames, s.height, s.width, device=dev) * 2 - 1
    g = torch.Generator(device=dev)
    out: dict[str, Any] = {}
    gpu = dev.type == "cuda"
    start_gib = torch.cuda.memory_allocated() / 2**30 if gpu else 0.0

    def stage(name: str, fn):
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        secs, val = cuda_time(fn)
        out[f"{name}_s"] = secs
        out[f"{name}_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if gpu else 0.0
        return val

    t0 = time.time()
    lat = stage("rollout", lambda: upd.old.rollout(text, generator=g.manual_seed(0), timesteps=s.timesteps,
                                                   shift=s.shift, num_frames=s.num_frames))
    rgb = stage("decode", lambda: upd.old.decode(lat))
    batch = PairBatch(["p0"], [PROMPT], text, teacher, lat, student_rgb=rgb)
    dm = stage("d_step", lambda: d_upd.step(batch))
    scores = stage("d_score", lambda: d_upd.score(batch.student_rgb, batch.text, prompts=batch.prompts))
    sm = stage("student_step", lambda: (upd.step(batch, scores=scores), upd.publish())[0])
    out["wall_s"] = time.time() - t0
    out["total_s"] = sum(v for k, v in out.items() if k.endswith("_s") and k != "wall_s")
    out["resident_gib"] = start_gib
    out["latent_shape"], out["rgb_shape"] = list(lat.shape), list(rgb.shape)
    out["losses"] = {k: sm[k] for k in ("student_loss", "nft_loss")} | {"d_loss": dm["d_loss"]}
    res[key] = out
    print(key, json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}), flush=True)


def e2e_variants(m: dict[str, Any], dev: torch.device, res: dict[str, Any], out_dir: Path) -> None:
    """End-to-end rollout (θ_old → RGB): back to back, chunk-wise overlapped decode; VAE norms fused or not;
    plus the transformer alone through the LoRA adapters (no merged copy) and a profile of one decode."""
    from afd_async.models.wan.streaming import StreamingDecoder, rollout_video
    from afd_async.models.wan.vae_fused import fuse_rms_norms, unfuse_rms_norms

    s, pol, student = m["cfg"].student, m["upd"].policies, m["student"]
    old = pol.old
    vae = student._vae.vae
    text = torch.randn(1, s.wan.text_len, m["text_dim"], device=dev)
    g = torch.Generator(device=dev)
    kw = dict(timesteps=s.timesteps, shift=s.shift, num_frames=s.num_frames)
    ref_lat = old.rollout(text, generator=g.manual_seed(0), **kw)
    out: dict[str, Any] = {}
    res["e2e"] = out

    def timed(k: str, fn, ref=None, frames: int = s.num_frames) -> None:
        try:
            fn()  # warm-up
            secs, val = cuda_time(fn, reps=2)
            out[k] = dict(seconds=secs, fps=frames / secs)
            if ref is not None:
                out[k]["rel_err"] = float((val.float() - ref.float()).norm() / ref.float().norm())
        except Exception:  # noqa: BLE001 - report and go on
            out[k] = dict(error=traceback.format_exc()[-1500:])
        print(k, out[k], flush=True)

    timed("transformer/merged_old", lambda: old.rollout(text, generator=g.manual_seed(0), **kw), ref_lat)

    def via_adapters():
        with pol.use("old"):
            return student.rollout(text, generator=g.manual_seed(0), **kw)

    timed("transformer/lora_adapters", via_adapters, ref_lat)
    unfuse_rms_norms(vae.vae)
    ref = old.decode(ref_lat)
    timed("decode/diffusers_norms", lambda: old.decode(ref_lat), ref)
    fuse_rms_norms(vae.vae)
    timed("decode/fused_norms", lambda: old.decode(ref_lat), ref)
    unfuse_rms_norms(vae.vae)  # off by default (2 %); the rows below use diffusers' norms
    timed("e2e/back_to_back", lambda: old.decode(old.rollout(text, generator=g.manual_seed(0), **kw)), ref)
    timed("e2e/stream_overlap", lambda: rollout_video(old, StreamingDecoder(vae), text, overlap=True,
                                                      generator=g.manual_seed(0), **kw)[1], ref)
    if dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            old.decode(ref_lat)
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=14)
        (out_dir / "profile_decode.txt").write_text(table)
        out["decode_profile_top"] = [(e.key[:60], round(e.device_time_total / 1e3, 1)) for e in
                                     sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:10]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--only", default="afd,e2e")
    ap.add_argument("--smoke", nargs="*", default=None,
                    help="CPU dry run at experiment=wan_tiny; give the asset overrides (tests/integration/test_wan_training.py)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    smoke = args.smoke is not None
    dev = torch.device("cpu" if smoke else "cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    res: dict[str, Any] = dict(gpu=torch.cuda.get_device_name() if not smoke else "cpu", torch=torch.__version__)
    t0 = time.time()
    if smoke:
        from afd_async.testing.wan_assets import QWEN_SPECIAL_TINY, QWEN_TINY

        m = build(dev, ["experiment=wan_tiny", *args.smoke], backbone=QWEN_TINY, special=QWEN_SPECIAL_TINY)
    else:
        m = build(dev, ["experiment=wan_1_3b"])
    res["build_s"] = time.time() - t0
    steps = [("afd", lambda: (afd_step(m, dev, res, "afd_warmup"), afd_step(m, dev, res, "afd_step"))),
             ("e2e", lambda: e2e_variants(m, dev, res, out))]
    for name, fn in steps:
        if name not in args.only:
            continue
        t1 = time.time()
        try:
            fn()
        except Exception:  # noqa: BLE001
            res[f"{name}_error"] = traceback.format_exc()[-3000:]
            print(res[f"{name}_error"], flush=True)
        print(f"[{name}] {time.time() - t1:.0f}s wall", flush=True)
        (out / "bench_wan_afd.json").write_text(json.dumps(res, indent=1, default=str))
    step = res.get("afd_step", {})
    print("\n| stage | seconds | peak GiB |\n| --- | --- | --- |")
    for st in ("rollout", "decode", "d_step", "d_score", "student_step"):
        if f"{st}_s" in step:
            print(f"| {st} | {step[f'{st}_s']:.3f} | {step[f'{st}_peak_gib']:.1f} |")
    if step:
        print(f"| total | {step['total_s']:.3f} | resident {step['resident_gib']:.1f} |")
    for k, v in res.get("e2e", {}).items():
        if isinstance(v, dict) and "fps" in v:
            print(f"| {k} | {v['seconds']:.3f} s | {v['fps']:.1f} FPS | rel err {v.get('rel_err', 0.0):.1e} |")


if __name__ == "__main__":
    main()
