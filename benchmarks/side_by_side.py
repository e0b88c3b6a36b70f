"""Our causal Wan student beside Self-Forcing's own code, on the same GPU in the same call (issue 20).

Published figures are never the baseline: this runs the peer's generator through
`../shared/tools/peer-bench/selfforcing_fps.py` (upstream source laid out in the
ignored `.peer/`, its pinned diffusers in `.whl31/`; that README says how) in a
child process, then ours on the same configuration — Wan2.1-T2V-1.3B causal,
81 frames (21 latent) at 480×832, chunks of 3 latent frames, 4 steps
[1000, 750, 500, 250] shifted by 5, KV cache, bf16, random weights, seed 0 — and
writes both, with their ratios, to one JSON file.

What each figure is, on both sides (wall clock around a synchronised call):
  generator_fps   81 / seconds of the transformer rollout alone (VAE swapped out);
  first_chunk_s   until the first chunk's latents are final (4 denoising forwards);
  end_to_end_fps  81 / seconds of text features → RGB video. Self-Forcing: the better
                  of its CLI path (generate, then decode) and its streaming demo decoder;
                  ours: `streaming.rollout_video` (each chunk decoded on a side stream
                  while the next is generated);
  first_pixels_s  until the first chunk's pixels exist.
Ours also reports TFLOP/s of the rollout (work counted as in bench_wan.py) and the
card's measured bf16 matmul rate in the same process, so utilisation is against
this card, not a datasheet.

Usage on the device (repo root; `.whl` holds our wheels, `.whl31` the peer's):
    python3 benchmarks/side_by_side.py --out $OUT
`--tiny` runs both sides on CPU at a 2-layer, 4×8-latent size (checks the wiring only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_wan import STEPS, forward_flops  # noqa: E402  (sibling benchmark: one FLOP count for both)

from afd_async.models.wan.causal_student import WanCausalStudent  # noqa: E402
from afd_async.models.wan.config import TINY_WAN, TINY_WAN_VAE, WAN_T2V_1_3B  # noqa: E402

VIDEO_FRAMES, LATENT_FRAMES, CHUNK = 81, 21, 3
PEER_KEYS = ("generator_fps", "end_to_end_fps", "first_chunk_s", "first_pixels_s")


def wall(fn: Callable[[], Any], device: torch.device, reps: int) -> tuple[float, Any]:
    """Median wall seconds of `fn` over `reps` synchronised runs, and its last result."""
    times, out = [], None
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], out


def matmul_peak_tflops(device: torch.device) -> float | None:
    """This card's bf16 dense matmul rate (8192³, mean of 10 after 3 warm-ups): the MFU denominator."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    secs, _ = wall(lambda: [a @ b for _ in range(10)], device, 3)
    return 10 * 2 * 8192**3 / secs / 1e12


def peer_figures(result: dict[str, Any]) -> dict[str, float | None]:
    """Self-Forcing's RESULT record (selfforcing_fps.py) → the four figures of the comparison."""
    gen, cli, stream = result.get("pipeline_gen", {}), result.get("pipeline_e2e", {}), result.get("stream_e2e", {})
    e2e = [x for x in (cli.get("fps_mean"), stream.get("fps_mean")) if x is not None]
    first_chunk = stream.get("first_chunk_latent_ms") or gen.get("first_chunk_latent_ms")
    first_pixels = stream.get("first_chunk_pixels_ms")
    return dict(
        generator_fps=gen.get("fps_mean"),
        end_to_end_fps=max(e2e) if e2e else None,
        first_chunk_s=first_chunk["mean"] / 1e3 if first_chunk else None,
        first_pixels_s=first_pixels["mean"] / 1e3 if first_pixels else None,
    )


def ratios(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """Speed-ups of ours over the peer: rates ours ÷ peer, latencies peer ÷ ours (> 1 means we are faster)."""
    out: dict[str, float | None] = {}
    for k in PEER_KEYS:
        a, b = ours.get(k), peer.get(k)
        if a is None or b is None:
            out[k] = None
        else:
            out[k] = a / b if k.endswith("_fps") else b / a
    return out


def run_peer(out: Path, reps: int, tiny: bool, site: str) -> dict[str, Any]:
    """Self-Forcing's own code in a child process (its pinned diffusers on PYTHONPATH, not ours)."""
    script = Path(os.environ.get("PEER_BENCH", ".peer-bench")) / "selfforcing_fps.py"
    cmd = [sys.executable, str(script), "--reps", str(reps), "--out", str(out / "selfforcing")] + (["--tiny"] if tiny else [])
    env = dict(os.environ, PYTHONPATH=site, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    (out / "selfforcing.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"selfforcing_fps.py exited {proc.returncode}; tail:\n{(proc.stdout + proc.stderr)[-3000:]}")
    line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def run_ours(reps: int, tiny: bool) -> dict[str, Any]:
    """Our student on the same shapes: generator, first chunk, streamed end to end, first pixels."""
    from diffusers import AutoencoderKLWan

    from afd_async.models.wan.loaders import WanVAE
    from afd_async.models.wan.streaming import StreamingDecoder, rollout_video

    device = torch.device("cpu" if tiny or not torch.cuda.is_available() else "cuda")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    cfg, vae_kw = (TINY_WAN, TINY_WAN_VAE) if tiny else (WAN_T2V_1_3B, {})
    lh, lw = (4, 8) if tiny else (60, 104)
    torch.manual_seed(0)
    with torch.device(device):
        m = WanCausalStudent(transformer=cfg, latent_height=lh, latent_width=lw, chunk_frames=CHUNK,
                             compile=device.type == "cuda")
    m = m.to(dtype).eval().requires_grad_(False)
    text = torch.randn(1, 512, cfg["text_dim"], device=device, dtype=dtype)
    g = torch.Generator(device=device)
    kw = dict(timesteps=STEPS, shift=5.0)

    def roll(frames: int) -> torch.Tensor:
        return m.rollout(text, generator=g.manual_seed(0), latent_frames=frames, **kw)

    t0 = time.perf_counter()
    roll(LATENT_FRAMES)  # kernels, allocator, compilation
    res: dict[str, Any] = dict(warmup_s=time.perf_counter() - t0, device=str(device), dtype=str(dtype))
    t_gen, _ = wall(lambda: roll(LATENT_FRAMES), device, reps)
    t_first, _ = wall(lambda: roll(CHUNK), device, reps)
    p = m.tokens_per_frame * CHUNK
    pairs = [(p, p * (k + 1)) for k in range(LATENT_FRAMES // CHUNK)]
    flops = sum(5 * forward_flops(cfg, [pr], p) for pr in pairs) - forward_flops(cfg, [pairs[-1]], p)

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # conv3d algorithm search: the decoder is all convolutions
    with torch.device(device):
        vae = WanVAE(AutoencoderKLWan(**vae_kw)).to(device)
    vae.vae.to(dtype)
    dec = StreamingDecoder(vae)

    def stream(frames: int) -> torch.Tensor:
        return rollout_video(m, dec, text, overlap=True, generator=g.manual_seed(0), latent_frames=frames, **kw)[1]

    stream(LATENT_FRAMES)  # decoder warm-up (cuDNN search)
    t_e2e, video = wall(lambda: stream(LATENT_FRAMES), device, reps)
    t_pix, _ = wall(lambda: stream(CHUNK), device, reps)
    res.update(generator_s=t_gen, generator_fps=VIDEO_FRAMES / t_gen, first_chunk_s=t_first,
               end_to_end_s=t_e2e, end_to_end_fps=VIDEO_FRAMES / t_e2e, first_pixels_s=t_pix,
               video_shape=list(video.shape), rollout_tflop=flops / 1e12, tflops_per_s=flops / t_gen / 1e12)
    if device.type == "cuda":
        res["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "bench_out"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="both sides on CPU at a 2-layer size (wiring check)")
    ap.add_argument("--peer-site", default="/tmp/site_sf", help="PYTHONPATH with the peer's pinned diffusers")
    ap.add_argument("--skip-peer", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() and not a.tiny else "cpu")
    doc: dict[str, Any] = dict(
        date=dt.date.today().isoformat(), gpu=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        torch=torch.__version__, config=dict(model="Wan2.1-T2V-1.3B causal" if not a.tiny else "2-layer tiny",
                                             video_frames=VIDEO_FRAMES, latent_frames=LATENT_FRAMES, chunk=CHUNK,
                                             steps=STEPS, shift=5.0, seed=0, reps=a.reps),
    )
    path = out / f"side_by_side_{doc['date']}.json"

    def dump() -> None:
        path.write_text(json.dumps(doc, indent=1))

    if not a.skip_peer:
        t0 = time.perf_counter()
        raw = run_peer(out, a.reps, a.tiny, a.peer_site)
        doc["selfforcing"] = dict(peer_figures(raw), commit=raw.get("env", {}).get("peer_commit"), raw=raw)
        print(f"[selfforcing] {time.perf_counter() - t0:.0f}s: {json.dumps(peer_figures(raw))}", flush=True)
        dump()
    t0 = time.perf_counter()
    doc["ours"] = run_ours(a.reps, a.tiny)
    doc["ours"]["matmul_peak_tflops"] = matmul_peak_tflops(device)
    peak = doc["ours"]["matmul_peak_tflops"]
    doc["ours"]["rollout_mfu"] = doc["ours"]["tflops_per_s"] / peak if peak else None
    print(f"[ours] {time.perf_counter() - t0:.0f}s", flush=True)
    if "selfforcing" in doc:
        doc["ratios"] = ratios(doc["ours"], doc["selfforcing"])
    dump()
    print(f"{'figure':>16} {'Self-Forcing':>13} {'ours':>10} {'speed-up':>9}")
    for k in PEER_KEYS:
        sf, us, r = doc.get("selfforcing", {}).get(k), doc["ours"].get(k), doc.get("ratios", {}).get(k)
        fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{k:>16} {fmt(sf):>13} {fmt(us):>10} {fmt(r):>9}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
