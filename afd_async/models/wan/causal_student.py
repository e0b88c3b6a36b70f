"""Causal Wan student: Wan2.1 transformer blocks run chunk-wise block-causally (Self-Forcing).

Latents are Wan VAE latents `(B, C=16, F, h, w)` (h, w = H/8, W/8). The clip is
generated in chunks of `chunk_frames` latent frames (3). Within a chunk,
attention is bidirectional; across chunks it is causal. Every latent frame has
its own timestep (per-frame adaLN modulation), as in Self-Forcing's causal Wan.
The network predicts the flow velocity v = ε − x0 (Wan's target), so
x0 = x_t − t·v, with t ∈ [0, 1] fed to the time embedding as 1000·t.

The parameters are those of diffusers' `WanTransformer3DModel` (so its key
layout, its original-checkpoint converter and its peft integration apply); only
the forward pass is ours, because the causal mask, the per-frame modulation and
the caches do not fit diffusers' bidirectional forward.

Two ways to run it, computing the same numbers (the test checks it):

- **teacher forcing, `forward`**: tokens `[clean chunks | noisy chunks]`;
  clean chunk j attends to clean chunks ≤ j, noisy chunk k to clean chunks < k
  and itself. One SDPA call per query chunk over a contiguous key range (plus
  one concatenation for noisy chunks), so no masked-out work is done.
- **rollout with KV cache**: per chunk, `len(timesteps)` denoising passes that
  read the cache, then one clean pass at t = 0 that commits its keys/values.
  `use_cache=False` recomputes the clean context with the teacher-forcing
  pattern instead: the oracle.

A rolling window (`kv_cache_frames`) bounds attention for long videos; both
paths apply the same window, so they agree with eviction too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch
from diffusers import WanTransformer3DModel
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from afd_async.models.schedule import rollout_sigmas
from afd_async.models.wan.cache import CrossAttnCache, RollingKVCache, chunk_attention, window_start
from afd_async.models.wan.config import latent_frames as to_latent

__all__ = ["WanCausalStudent"]


@dataclass
class _Plan:
    """Teacher-forcing attention plan: for each query range, the key ranges it reads (token indices)."""

    segments: list[tuple[slice, tuple[slice, ...]]]


@dataclass
class _CacheCtx:
    cache: RollingKVCache


class _SharedVAE:
    """Holds the VAE outside the module tree: not in `state_dict`/`parameters` (weights are published
    without it) and shared, not copied, by `copy.deepcopy` (full-finetune copies, EMA)."""

    def __init__(self, vae: Optional[nn.Module]) -> None:
        self.vae = vae

    def __deepcopy__(self, memo: dict) -> "_SharedVAE":
        return self


def _rope_apply(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved pairs of `x (B, L, H, Dh)` by `cos, sin (L, Dh/2)` (Wan / diffusers convention)."""
    xf = x.float().unflatten(-1, (-1, 2))
    x1, x2 = xf[..., 0], xf[..., 1]
    c, s = cos[None, :, None], sin[None, :, None]
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2).type_as(x)


def _modulated_norm(h: Tensor, scale: Tensor, shift: Tensor, f: int, eps: float) -> Tensor:
    """LayerNorm (no affine, fp32) of tokens `h (B, F·P, D)` modulated per frame by `scale, shift (B, F, D)`."""
    b, _, d = h.shape
    y = torch.nn.functional.layer_norm(h.float(), (d,), eps=eps).view(b, f, -1, d)
    return (y * (1 + scale[:, :, None]) + shift[:, :, None]).flatten(1, 2).to(h.dtype)


def _gated_residual(h: Tensor, a: Tensor, gate: Tensor, f: int) -> Tensor:
    """`h + a·gate` in fp32 with a per-frame `gate (B, F, D)`, back in h's dtype."""
    b, _, d = h.shape
    y = h.float().view(b, f, -1, d) + a.float().view(b, f, -1, d) * gate[:, :, None]
    return y.flatten(1, 2).to(h.dtype)


class WanCausalStudent(nn.Module):
    """Block-causal Wan DiT with KV-cache rollout.

    Args:
        transformer: `WanTransformer3DModel` config kwargs (see `config.WAN_T2V_1_3B`).
        latent_height, latent_width: latent grid (60×104 at 480×832).
        chunk_frames: latent frames per chunk (3).
        max_frames: longest rollout in latent frames (a memory guard).
        kv_cache_frames: attention window in latent frames, current chunk included;
            None = global attention over everything generated so far.
        gradient_checkpointing: recompute each block in backward (training memory).
        compile: fuse the elementwise work (modulation, gates, RoPE) with `torch.compile`;
            on Hopper the eager rollout spends ~40% of its GPU time in these small
            kernels and their dtype copies (see benchmarks/RESULTS.md).
    """

    def __init__(
        self, *, transformer: dict[str, Any], latent_height: int = 60, latent_width: int = 104, chunk_frames: int = 3,
        max_frames: int = 63, kv_cache_frames: Optional[int] = None, gradient_checkpointing: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(
            transformer=dict(transformer), latent_height=latent_height, latent_width=latent_width,
            chunk_frames=chunk_frames, max_frames=max_frames, kv_cache_frames=kv_cache_frames,
            gradient_checkpointing=gradient_checkpointing, compile=compile,
        )
        self.transformer = WanTransformer3DModel(**transformer)
        pt, ph, pw = self.transformer.config.patch_size
        if pt != 1 or latent_height % ph or latent_width % pw:
            raise ValueError(f"latent {latent_height}x{latent_width} must be multiples of patch {ph}x{pw}; patch t must be 1")
        self.chunk_frames, self.max_frames, self.kv_cache_frames = chunk_frames, max_frames, kv_cache_frames
        self.latent_height, self.latent_width = latent_height, latent_width
        self.channels = self.transformer.config.in_channels
        self.grid = (latent_height // ph, latent_width // pw)
        self.tokens_per_frame = self.grid[0] * self.grid[1]
        self.gradient_checkpointing = gradient_checkpointing
        wrap = (lambda fn: torch.compile(fn, dynamic=False)) if compile else (lambda fn: fn)  # noqa: E731
        self._mnorm, self._gres, self._rope_fn = wrap(_modulated_norm), wrap(_gated_residual), wrap(_rope_apply)
        self._vae = _SharedVAE(None)

    def attach_vae(self, vae: nn.Module) -> None:
        """Give the student its decoder (a `WanVAE`), for `decode`; it stays out of the student's weights."""
        self._vae = _SharedVAE(vae)

    def decode(self, latents: Tensor) -> Tensor:
        """Latents `(B, C, F, h, w)` → RGB video `(B, 3, 4(F−1)+1, 8h, 8w)` in [-1, 1] (float32, on the latents' device)."""
        vae = self._vae.vae
        if vae is None:
            raise RuntimeError("this Wan student has no VAE attached (attach_vae / student.wan.vae_checkpoint)")
        dev = next(vae.parameters()).device
        return vae.decode(latents.to(dev)).float().to(latents.device)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "WanCausalStudent":
        """Rebuild from `self.config` (as saved in a checkpoint's metadata)."""
        return cls(**config)

    # ------------------------------------------------------------------ embeddings

    def _time(self, t_frames: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Per-frame `t (B, F)` in [0, 1] -> temb `(B, F, D)` and block modulation `(B, F, 6, D)`."""
        emb = self.transformer.condition_embedder
        b, f = t_frames.shape
        tp = emb.timesteps_proj(t_frames.reshape(-1).float() * 1000.0)
        tp = tp.to(next(emb.time_embedder.parameters()).dtype)
        temb = emb.time_embedder(tp).to(dtype)
        proj = emb.time_proj(emb.act_fn(temb))
        return temb.view(b, f, -1), proj.view(b, f, 6, -1)

    def embed_text(self, text: Tensor) -> Tensor:
        """UMT5 features `(B, L, text_dim)` -> cross-attention context `(B, L, D)`."""
        p = self.transformer.proj_out.weight
        return self.transformer.condition_embedder.text_embedder(text.to(p.device, p.dtype))

    def _rope(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """cos, sin `(F·h'·w', Dh/2)` for absolute latent-frame positions `frames (F,)`."""
        rope = self.transformer.rope
        gh, gw = self.grid
        out = []
        for table in (rope.freqs_cos, rope.freqs_sin):
            ft, fh, fw = table.split([rope.t_dim, rope.h_dim, rope.w_dim], dim=1)
            f = len(frames)
            parts = (
                ft[frames.to(ft.device)].view(f, 1, 1, -1).expand(f, gh, gw, -1),
                fh[:gh].view(1, gh, 1, -1).expand(f, gh, gw, -1),
                fw[:gw].view(1, 1, gw, -1).expand(f, gh, gw, -1),
            )
            out.append(torch.cat(parts, dim=-1).reshape(f * gh * gw, -1)[:, 0::2].float())
        return out[0], out[1]

    # ------------------------------------------------------------------ blocks

    def _self_attn(self, i: int, attn: nn.Module, x: Tensor, rope: tuple[Tensor, Tensor], ctx: Union[_Plan, _CacheCtx]) -> Tensor:
        """Block-causal self-attention of `x (B, L, D)` under a plan or against the KV cache."""
        q = attn.norm_q(attn.to_q(x)).unflatten(2, (attn.heads, -1))
        k = attn.norm_k(attn.to_k(x)).unflatten(2, (attn.heads, -1))
        v = attn.to_v(x).unflatten(2, (attn.heads, -1))
        q, k = self._rope_fn(q, *rope), self._rope_fn(k, *rope)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if isinstance(ctx, _CacheCtx):
            kk, vv = ctx.cache.attend_kv(i, k, v)
            out = chunk_attention(q, kk, vv)
        else:
            outs = []
            for qs, ks in ctx.segments:
                kk = k[:, :, ks[0]] if len(ks) == 1 else torch.cat([k[:, :, s] for s in ks], dim=2)
                vv = v[:, :, ks[0]] if len(ks) == 1 else torch.cat([v[:, :, s] for s in ks], dim=2)
                outs.append(chunk_attention(q[:, :, qs], kk, vv))
            out = torch.cat(outs, dim=2)
        return attn.to_out[0](out.transpose(1, 2).flatten(2).type_as(x))

    def _cross_attn(self, i: int, attn: nn.Module, x: Tensor, text_e: Tensor, cross: CrossAttnCache) -> Tensor:
        q = attn.norm_q(attn.to_q(x)).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        kv = cross.get(i)
        if kv is None:
            k = attn.norm_k(attn.to_k(text_e)).unflatten(2, (attn.heads, -1)).transpose(1, 2)
            v = attn.to_v(text_e).unflatten(2, (attn.heads, -1)).transpose(1, 2)
            kv = (k, v)
            if not torch.is_grad_enabled():  # only inference reuses projected text keys across calls
                cross.put(i, k, v)
        out = chunk_attention(q, *kv)
        return attn.to_out[0](out.transpose(1, 2).flatten(2).type_as(x))

    def _block(self, i: int, h: Tensor, mod: Tensor, rope: tuple[Tensor, Tensor], text_e: Tensor,
               ctx: Union[_Plan, _CacheCtx], cross: CrossAttnCache) -> Tensor:
        """One Wan block with per-frame modulation `mod (B, F, 6, D)` on tokens `h (B, F·P, D)`."""
        blk = self.transformer.blocks[i]
        b, f = mod.shape[:2]
        shift, scale, gate, c_shift, c_scale, c_gate = (blk.scale_shift_table[None].float() + mod.float()).unbind(2)
        n = self._mnorm(h, scale, shift, f, blk.norm1.eps)
        h = self._gres(h, self._self_attn(i, blk.attn1, n, rope, ctx), gate, f)
        h = h + self._cross_attn(i, blk.attn2, blk.norm2(h.float()).type_as(h), text_e, cross)
        return self._gres(h, blk.ffn(self._mnorm(h, c_scale, c_shift, f, blk.norm3.eps)), c_gate, f)

    def _run(self, x: Tensor, t_frames: Tensor, text_e: Tensor, frames: Tensor, ctx: Union[_Plan, _CacheCtx],
             cross: CrossAttnCache, out_from: Optional[int] = 0) -> Optional[Tensor]:
        """Transformer over latents `x (B, C, F, h, w)` at levels `t_frames (B, F)`, positions `frames (F,)`.

        Returns v `(B, C, F − out_from, h, w)`, or None when `out_from is None` (cache-writing pass).
        """
        tr = self.transformer
        b, _, f, _, _ = x.shape
        h = tr.patch_embedding(x.to(tr.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        temb, mod = self._time(t_frames, h.dtype)
        rope = self._rope(frames)
        ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for i in range(len(tr.blocks)):
            if ckpt:
                h = checkpoint(self._block, i, h, mod, rope, text_e, ctx, cross, use_reentrant=False)
            else:
                h = self._block(i, h, mod, rope, text_e, ctx, cross)
        if out_from is None:
            return None
        p = self.tokens_per_frame
        h, temb = h[:, out_from * p :], temb[:, out_from:]
        fo = f - out_from
        shift, scale = (tr.scale_shift_table[None].float() + temb[:, :, None].float()).unbind(2)
        y = tr.norm_out(h.float()).view(b, fo, p, -1) * (1 + scale[:, :, None]) + shift[:, :, None]
        y = tr.proj_out(y.flatten(1, 2).type_as(h))
        (gh, gw), (_, ph, pw) = self.grid, tr.config.patch_size
        y = y.reshape(b, fo, gh, gw, ph, pw, -1).permute(0, 6, 1, 2, 4, 3, 5)
        return y.reshape(b, -1, fo, gh * ph, gw * pw)

    # ------------------------------------------------------------------ teacher forcing

    def _plan(self, n_clean: int, n_noisy: int, start: int) -> _Plan:
        """Token plan over `[clean chunks 0..n_clean−1 | noisy chunks start..start+n_noisy−1]`."""
        cf, p = self.chunk_frames, self.tokens_per_frame
        cs = cf * p
        segs: list[tuple[slice, tuple[slice, ...]]] = []
        for j in range(n_clean):
            ws = window_start(j * cf, self.kv_cache_frames, cf) * p
            segs.append((slice(j * cs, (j + 1) * cs), (slice(ws, (j + 1) * cs),)))
        for i in range(n_noisy):
            a = start + i
            own = slice((n_clean + i) * cs, (n_clean + i + 1) * cs)
            ws, past = window_start(a * cf, self.kv_cache_frames, cf) * p, min(a, n_clean) * cs
            segs.append((own, (slice(ws, past), own) if past > ws else (own,)))
        return _Plan(segs)

    def _teacher_forced(self, noisy: Tensor, t: Tensor, start: int, clean: Tensor, text_e: Tensor,
                        cross: Optional[CrossAttnCache] = None) -> Tensor:
        """v of noisy chunks `start, …` `(B, C, n·cf, h, w)` at per-chunk `t (B, n)` given `clean (B, C, m·cf, h, w)`."""
        cf = self.chunk_frames
        b, fn, fc = noisy.shape[0], noisy.shape[2], clean.shape[2]
        x = torch.cat([clean.to(noisy.dtype), noisy], dim=2)
        t_frames = torch.cat([t.new_zeros(b, fc), t.repeat_interleave(cf, dim=1)], dim=1)
        frames = torch.cat([torch.arange(fc), start * cf + torch.arange(fn)]).to(x.device)
        ctx = self._plan(fc // cf, fn // cf, start)
        return self._run(x, t_frames, text_e, frames, ctx, cross or CrossAttnCache(len(self.transformer.blocks)), out_from=fc)

    def forward(self, x_t: Tensor, t: Tensor, text: Tensor, clean: Tensor) -> Tensor:
        """Teacher-forcing training forward.

        Args:
            x_t: `(B, C, F, h, w)` noisy latents, chunk k at level `t[:, k]`.
            t: `(B, n_chunks)` per-chunk noise level in [0, 1].
            text: `(B, L, text_dim)` UMT5 features.
            clean: `(B, C, F, h, w)` clean latents, the causal context.

        Returns:
            v `(B, C, F, h, w)`: chunk k's velocity given clean chunks < k.
        """
        b, c, f, hh, ww = x_t.shape
        cf = self.chunk_frames
        if (c, hh, ww) != (self.channels, self.latent_height, self.latent_width) or f % cf:
            raise ValueError(f"x_t {tuple(x_t.shape)} does not fit (B, {self.channels}, k·{cf}, "
                             f"{self.latent_height}, {self.latent_width})")
        if clean.shape != x_t.shape or tuple(t.shape) != (b, f // cf):
            raise ValueError(f"clean {tuple(clean.shape)} must equal x_t's shape and t {tuple(t.shape)} be ({b}, {f // cf})")
        return self._teacher_forced(x_t, t, 0, clean[:, :, : f - cf], self.embed_text(text))

    # ------------------------------------------------------------------ rollout

    @torch.no_grad()
    def rollout(self, text: Tensor, *, generator: torch.Generator, timesteps: Sequence[int], shift: float,
                num_frames: Optional[int] = None, latent_frames: Optional[int] = None, use_cache: bool = True,
                on_chunk: Optional[Callable[[int, Tensor], None]] = None) -> Tensor:
        """Generate latents chunk by chunk (Self-Forcing few-step causal sampling).

        Noise is drawn on the generator's device in a fixed order (per chunk: the
        initial noise, then one re-noising draw per step but the last), the same
        with and without cache, so both paths give the same latents for one seed.

        Args:
            text: `(B, L, text_dim)` UMT5 features.
            generator: source of all noise.
            timesteps: levels on the 0..1000 grid, shifted by `shift` (`rollout_sigmas`).
            num_frames: video frames (4k+1, as `student.num_frames`: 81 → 21 latent frames), or
            latent_frames: latent frames directly; give exactly one. Latent frames must be a
                multiple of `chunk_frames`.
            use_cache: False recomputes the clean context every step (the oracle).
            on_chunk: called with (chunk index, its x0 latents) as soon as a chunk is final, before the
                next chunk starts (e.g. to decode it on a side stream while the next one is generated).

        Returns:
            x0 latents `(B, C, latent frames, h, w)` (decode with `WanVAE.decode`).
        """
        if (num_frames is None) == (latent_frames is None):
            raise ValueError("give exactly one of num_frames (video frames) or latent_frames")
        num_frames = to_latent(num_frames) if latent_frames is None else latent_frames
        cf = self.chunk_frames
        if num_frames % cf or not 0 < num_frames <= self.max_frames:
            raise ValueError(f"latent frames ({num_frames}) must be a positive multiple of {cf} and <= {self.max_frames}")
        sigmas = rollout_sigmas(timesteps, shift)
        w = self.transformer.proj_out.weight
        b = text.shape[0]
        shape = (b, self.channels, cf, self.latent_height, self.latent_width)
        text_e = self.embed_text(text)
        nb = len(self.transformer.blocks)
        cross = CrossAttnCache(nb)
        cap = self.kv_cache_frames or num_frames
        cache = RollingKVCache(nb, capacity_frames=max(cap, 2 * cf), tokens_per_frame=self.tokens_per_frame,
                               chunk_frames=cf) if use_cache else None
        chunks: list[Tensor] = []

        def noise() -> Tensor:
            return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(w.device)

        for k in range(num_frames // cf):
            x = noise()
            frames = torch.arange(k * cf, (k + 1) * cf, device=w.device)
            if cache is not None:
                cache.make_room(cf)
            for i, s in enumerate(sigmas):
                t = torch.full((b, 1), s, device=w.device)
                if cache is not None:
                    v = self._run(x.to(w.dtype), t.expand(b, cf), text_e, frames, _CacheCtx(cache), cross)
                else:
                    context = torch.cat(chunks, dim=2) if chunks else x[:, :, :0]
                    v = self._teacher_forced(x.to(w.dtype), t, k, context.to(w.dtype), text_e, cross)
                x0 = x - s * v.float()
                if i + 1 < len(sigmas):
                    x = (1 - sigmas[i + 1]) * x0 + sigmas[i + 1] * noise()
            chunks.append(x0)
            if on_chunk is not None:
                on_chunk(k, x0)
            if cache is not None and (k + 1) * cf < num_frames:  # the last chunk is nobody's context
                self._run(x0.to(w.dtype), x0.new_zeros(b, cf), text_e, frames, _CacheCtx(cache), cross, out_from=None)
                cache.commit(cf)
        return torch.cat(chunks, dim=2)
