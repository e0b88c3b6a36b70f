"""GPU benchmark of the real-scale models at their real configs with random weights.

Measures, in one process (one device call):

1. rollout: 81 frames (21 latent) at 480×832, 4 steps/chunk, KV cache, bf16:
   frames/s of the transformer alone and with the Wan VAE decode; first-chunk latency;
2. one AFD student step (NFT: v_θ with grad, v_old and v_ref without, all at
   per-chunk noise, LoRA r=64 policies, gradient checkpointing) at batch 1:
   seconds, model FLOPs (counted below) and MFU, peak memory;
3. one discriminator Bradley–Terry step on a (teacher, student) pair of
   81-frame 480×832 clips (VideoReward: Qwen2-VL-2B + LoRA r=64): seconds, peak memory;
4. a profile of one cached denoising forward (where the rollout time goes).

Usage (on the device): `python3 benchmarks/bench_wan.py --out $OUT`. Prints a
table last and writes `bench_wan.json` and `profile_rollout.txt` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from afd_async.models.wan.causal_student import WanCausalStudent
from afd_async.models.wan.config import WAN_T2V_1_3B

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}  # dense bf16 datasheet rate (SXM); MFU is against this
STEPS = [1000, 750, 500, 250]


def cuda_time(fn: Callable[[], Any], reps: int = 1) -> tuple[float, Any]:
    """Median seconds of `fn` over `reps` runs (events around each), and its last result."""
    times, out = [], None
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        out = fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return sorted(times)[len(times) // 2], out


def linear_params_per_token(cfg: dict[str, Any]) -> int:
    """Weights every video token multiplies (self-attn qkvo, cross-attn q/o, FFN), per model; text k/v excluded."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    per_block = 4 * d * d + 2 * d * d + 2 * d * cfg["ffn_dim"]
    return cfg["num_layers"] * per_block + d * 16 * 4 * 2  # + patch embed and head


def forward_flops(cfg: dict[str, Any], q_k_pairs: list[tuple[int, int]], tokens: int, text_len: int = 512) -> float:
    """FLOPs of one transformer forward: 2·params·tokens for linears, 4·Lq·Lk·D per attention, per layer."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    attn = sum(4 * lq * lk * d for lq, lk in q_k_pairs) + 4 * tokens * text_len * d
    return 2 * linear_params_per_token(cfg) * tokens + cfg["num_layers"] * attn


def bench_rollout(res: dict[str, Any], out: Path, compile: bool = False) -> None:
    dev, dt = torch.device("cuda"), torch.bfloat16
    key = "rollout_compiled" if compile else "rollout"
    with torch.device(dev):
        m = WanCausalStudent(transformer=WAN_T2V_1_3B, latent_height=60, latent_width=104, chunk_frames=3, compile=compile)
    m = m.to(dt).eval().requires_grad_(False)
    text = torch.randn(1, 512, 4096, device=dev, dtype=dt)
    g = torch.Generator(device=dev)
    roll = lambda f: m.rollout(text, generator=g.manual_seed(0), timesteps=STEPS, shift=5.0, latent_frames=f)  # noqa: E731
    t0 = time.time()
    roll(21)  # warm-up (kernels, allocator, compilation)
    warmup_s = time.time() - t0
    t_full, lat = cuda_time(lambda: roll(21), reps=3)
    t_first, _ = cuda_time(lambda: roll(3), reps=3)
    p = m.tokens_per_frame * 3
    pairs = [(p, p * (k + 1)) for k in range(7)]
    flops = sum(5 * forward_flops(WAN_T2V_1_3B, [pr], p) for pr in pairs) - forward_flops(WAN_T2V_1_3B, [pairs[-1]], p)
    res[key] = dict(warmup_s=warmup_s, latent_frames=21, video_frames=81, seconds=t_full, transformer_fps=81 / t_full,
                          first_chunk_s=t_first, tflops=flops / 1e12, tflops_per_s=flops / t_full / 1e12)
    # where a forward's time goes: one cached denoising forward of the last chunk
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        roll(21)
        torch.cuda.synchronize()
    (out / f"profile_{key}.txt").write_text(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25))
    res[key]["profile_top"] = [
        (e.key, round(e.device_time_total / 1e3, 1)) for e in sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:8]
    ]
    del m
    torch.cuda.empty_cache()
    # VAE decode of the 21 latent frames
    from diffusers import AutoencoderKLWan

    from afd_async.models.wan.loaders import WanVAE

    torch.backends.cudnn.benchmark = True  # conv3d algorithm search: the decoder is all convolutions
    with torch.device(dev):
        vae = WanVAE(AutoencoderKLWan()).to(dev)
    vae.vae.to(dt)
    vae.decode(lat[:, :, :3])
    t_dec, video = cuda_time(lambda: vae.decode(lat), reps=2)
    t_dec1, _ = cuda_time(lambda: vae.decode(lat[:, :, :1]), reps=2)
    res[key].update(vae_decode_s=t_dec, video_shape=list(video.shape), end_to_end_fps=81 / (t_full + t_dec),
                          first_frame_latency_s=t_first + t_dec1, anchor_fps=17.0, ratio_to_anchor=81 / (t_full + t_dec) / 17.0)
    del vae, video
    torch.cuda.empty_cache()


def bench_student_step(res: dict[str, Any]) -> None:
    from afd_async.algo.losses import nft_loss, ref_regulariser
    from afd_async.models.wan.lora import LoraPolicies

    dev, dt = torch.device("cuda"), torch.bfloat16
    with torch.device(dev):
        m = WanCausalStudent(transformer=WAN_T2V_1_3B, latent_height=60, latent_width=104, chunk_frames=3,
                             gradient_checkpointing=True)
    m = m.to(dt)
    pol = LoraPolicies(m, rank=64, alpha=64)
    m.train()
    opt = torch.optim.AdamW(pol.trainable_parameters(), lr=1e-5)
    b, f = 1, 21
    x0 = torch.randn(b, 16, f, 60, 104, device=dev, dtype=dt)
    text = torch.randn(b, 512, 4096, device=dev, dtype=dt)
    theta, old, ref = pol.view("default"), pol.view("old"), pol.view("ref")

    def step() -> float:
        t = torch.rand(b, f // 3, device=dev).to(dt)
        eps = torch.randn_like(x0)
        tt = t.repeat_interleave(3, dim=1)[:, None, :, None, None]
        x_t = (1 - tt) * x0 + tt * eps
        with torch.no_grad():
            v_old = old(x_t, t, text, x0)
            v_ref = ref(x_t, t, text, x0)
        v = theta(x_t, t, text, x0)
        w = torch.full((b,), 0.7, device=dev)
        loss = nft_loss(x_t=x_t, t=t, x0=x0, v_theta=v, v_old=v_old, weight=w, beta=0.1, adv_clip=5.0)
        loss = loss + 1e-4 * ref_regulariser(v, v_ref)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    step()
    torch.cuda.reset_peak_memory_stats()
    secs, _ = cuda_time(step, reps=3)
    p, cs = m.tokens_per_frame, 3 * m.tokens_per_frame
    pairs = [(cs, cs * (j + 1)) for j in range(6)] + [(cs, cs * (k + 1)) for k in range(7)]
    fwd = forward_flops(WAN_T2V_1_3B, pairs, 39 * p)
    model_flops = 2 * fwd + 3 * fwd  # v_old, v_ref forwards; v_θ forward + backward (2×); recompute not counted
    res["student_step"] = dict(batch=1, latent_frames=f, tokens=39 * p, seconds=secs, model_tflops=model_flops / 1e12,
                               mfu=model_flops / secs / PEAK_BF16["H100"], peak_gib=torch.cuda.max_memory_allocated() / 2**30,
                               lora_params_m=sum(q.numel() for q in pol.trainable_parameters()) / 1e6)
    del m, pol, opt
    torch.cuda.empty_cache()


def bench_discriminator(res: dict[str, Any]) -> None:
    from afd_async.models.videoreward.loaders import tiny_tokenizer
    from afd_async.models.videoreward.model import QWEN2_VL_2B, VideoRewardDiscriminator

    dev, dt = torch.device("cuda"), torch.bfloat16
    from afd_async.testing.wan_assets import QWEN_SPECIAL_REAL as special

    words = "rate this generated video on three separate criteria".split()
    tok = tiny_tokenizer(words, special)
    with torch.device(dev):
        d = VideoRewardDiscriminator(tokenizer=tok, backbone=QWEN2_VL_2B, lora_rank=64, lora_alpha=128, fps=16.0,
                                     gradient_checkpointing=True, dtype=dt)
    d.train()
    opt = torch.optim.AdamW(d.trainable_parameters(), lr=5e-6)
    pair = torch.rand(2, 3, 81, 480, 832, device=dev, dtype=dt) * 2 - 1

    def step() -> float:
        s = d(pair, ["a ball falls and bounces twice"] * 2)
        loss = -torch.nn.functional.logsigmoid(s[0] - s[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    step()
    torch.cuda.reset_peak_memory_stats()
    secs, _ = cuda_time(step, reps=3)
    n_tok = int(d.inputs(pair[:1], ["x"])["input_ids"].shape[1])
    res["disc_step"] = dict(seconds=secs, peak_gib=torch.cuda.max_memory_allocated() / 2**30, seq_tokens=n_tok,
                            lora_params_m=sum(q.numel() for q in d.trainable_parameters()) / 1e6)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--only", default="rollout,compiled,student,disc")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    res: dict[str, Any] = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__)
    for name, fn in (("rollout", lambda: bench_rollout(res, out)), ("compiled", lambda: bench_rollout(res, out, True)),
                     ("student", lambda: bench_student_step(res)),
                     ("disc", lambda: bench_discriminator(res))):
        if name not in args.only:
            continue
        t0 = time.time()
        try:
            fn()
        except Exception:  # noqa: BLE001 - report and go on to the next measurement
            res[f"{name}_error"] = traceback.format_exc()[-2000:]
            print(res[f"{name}_error"], flush=True)
        torch.cuda.empty_cache()
        print(f"[{name}] {time.time() - t0:.0f}s wall", flush=True)
        (out / "bench_wan.json").write_text(json.dumps(res, indent=1, default=str))
    print(json.dumps({k: v for k, v in res.items() if not k.endswith("_error")}, indent=1, default=str))


if __name__ == "__main__":
    main()
