"""Building blocks of the tiny causal student: embeddings, temporal RoPE, adaLN-Zero DiT blocks.

Tokens are kept per frame, `(B, F, P, D)` with P = (H/p)·(W/p) patches, so that
the conditioning (noise level + prompt) can be computed once per frame
`(B, F, D)` and broadcast over the frame's patches: every token of a chunk
shares the chunk's t, and a per-token modulation MLP would cost as much as the
block's own MLP for nothing.

Position: a fixed 2D sin-cos embedding for the patch's place in the frame
(added once), and rotary embedding along *time* inside attention. RoPE makes
attention depend on frame offsets, not absolute frame indices, which is what
lets a rollout run past the training length (no learned table to outgrow).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from afd_async.models.kv_cache import LayerKV

__all__ = ["AttnPlan", "sincos_2d", "timestep_embedding", "TimestepEmbedder", "TemporalRope", "DiTBlock", "FinalLayer"]

AttnPlan = Sequence[tuple[slice, tuple[slice, ...]]]
"""Block-sparse attention: consecutive query-token ranges, each with the key-token ranges it attends to.

Block-causal attention over [clean | noisy] streams is ~70% masked; running one
unmasked attention per query block skips that work instead of multiplying it
by a boolean mask (3x less attention compute for 4 chunks).
"""


def _sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """`(N,)` positions -> `(N, dim)` [sin | cos] features (MAE / DiT convention)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    out = pos.to(torch.float64)[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim: int, h: int, w: int) -> Tensor:
    """Fixed 2D position embedding of an `h × w` patch grid, `(h·w, dim)` row-major, float32."""
    if dim % 4:
        raise ValueError(f"dim ({dim}) must be divisible by 4 for a 2D sin-cos embedding")
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    emb = torch.cat([_sincos_1d(dim // 2, ys.flatten()), _sincos_1d(dim // 2, xs.flatten())], dim=1)
    return emb.float()


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of noise levels (DiT / ADM), `t` of any shape -> `(*t.shape, dim)`.

    `t` here is already on the 0..1000 scale, so neighbouring schedule levels
    (e.g. 937.5 vs 833.3) get clearly different features.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(t.dtype if t.is_floating_point() else torch.float32)


class TimestepEmbedder(nn.Module):
    """t ∈ [0, 1] -> `(…, dim)`: sinusoid of 1000·t, then a 2-layer MLP."""

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        for m in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, t: Tensor) -> Tensor:
        emb = timestep_embedding(1000.0 * t, self.freq_dim).to(self.mlp[0].weight.dtype)
        return self.mlp(emb)


class TemporalRope(nn.Module):
    """Rotary position embedding along the frame index, on the full head dimension.

    `cos_sin(frames)` gives the rotation for each token's frame; keys are
    rotated *before* they enter the KV cache, so cached and recomputed keys are
    the same numbers.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim ({head_dim}) must be even for RoPE")
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def cos_sin(self, frames: Tensor, tokens_per_frame: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """`(F,)` frame indices -> (cos, signed sin), each `(F·P, head_dim)` in `dtype` (see `apply_rope`)."""
        ang = frames.to(torch.float64)[:, None] * self.inv_freq[None].to(frames.device)
        cos = torch.cat([ang.cos(), ang.cos()], dim=-1)
        sin = torch.cat([-ang.sin(), ang.sin()], dim=-1)
        return (cos.repeat_interleave(tokens_per_frame, dim=0).to(dtype),
                sin.repeat_interleave(tokens_per_frame, dim=0).to(dtype))


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate `x (B, L, k, heads, hd)` by (cos, signed sin) `(L, hd)`, rotate-half convention.

    The sign of rotate-half lives in `sin` (`[−sin | sin]`), so q and k are
    rotated together with one swap and two multiply-adds (this runs on every
    layer's full token set and was ~15% of the CPU forward with a naive version).
    """
    half = x.shape[-1] // 2
    swapped = torch.cat([x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None, None] + swapped * sin[:, None, None]


class SelfAttention(nn.Module):
    """Multi-head self-attention with temporal RoPE, over a block-sparse plan or with a KV cache.

    With `plan`, each query block attends to its listed key ranges (see
    `AttnPlan`); with neither plan nor cache, attention is full. With `cache`,
    queries attend to the cached keys/values (the clean chunks generated so
    far) followed by their own; `write=True` appends this call's keys/values to
    the cache (the clean-chunk pass of the rollout).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: Tensor, rope: tuple[Tensor, Tensor], plan: Optional[AttnPlan] = None,
        cache: Optional[LayerKV] = None, write: bool = False, q_from: int = 0,
    ) -> Tensor:
        """`x (B, L, D)` -> `(B, L − q_from, D)`.

        Tokens before `q_from` only serve as keys/values (their outputs are not
        needed, e.g. the clean stream in the last block), so their queries are
        skipped; `q_from` must fall on a plan block boundary.
        """
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads)
        q, k = apply_rope(qkv[:, :, :2], *rope).permute(2, 0, 3, 1, 4)  # (B, heads, L, hd) each
        v = qkv[:, :, 2].transpose(1, 2)
        if cache is not None:
            if write:
                cache.append(k, v)
                k, v = cache.keys, cache.values
            elif cache.keys is not None:
                k, v = torch.cat([cache.keys, k], dim=2), torch.cat([cache.values, v], dim=2)
        if q_from >= n:
            return x.new_empty(b, 0, d)
        if plan is None:
            out = F.scaled_dot_product_attention(q[:, :, q_from:], k, v)
        else:
            outs = []
            for qs, ks in plan:
                if qs.start < q_from:
                    if qs.stop > q_from:
                        raise ValueError(f"q_from={q_from} splits the plan block {qs}")
                    continue
                kk = k[:, :, ks[0]] if len(ks) == 1 else torch.cat([k[:, :, r] for r in ks], dim=2)
                vv = v[:, :, ks[0]] if len(ks) == 1 else torch.cat([v[:, :, r] for r in ks], dim=2)
                outs.append(F.scaled_dot_product_attention(q[:, :, qs], kk, vv))
            out = torch.cat(outs, dim=2)
        return self.proj(out.transpose(1, 2).reshape(b, n - q_from, d))


class CrossAttention(nn.Module):
    """Every token attends to the prompt's word tokens (those where `mask` is True); no RoPE, no cache (the
    prompt is the same for every chunk). The output projection starts at zero, so a block with it starts as the
    block without it."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, ctx: Tensor, mask: Tensor) -> Tensor:
        """`x (B, L, D)`, `ctx (B, T, D)`, `mask (B, T)` bool -> `(B, L, D)`."""
        b, n, d = x.shape
        hd = d // self.heads
        q = self.q(x).view(b, n, self.heads, hd).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation from the per-frame condition.

    The modulation is zero-initialised, so every block starts as the identity
    and the untrained student is exactly stable (DiT, Peebles & Xie 2023, §3.2).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, cross_attention: bool = False) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.cross = CrossAttention(dim, heads) if cross_attention else None
        self.norm_x = nn.LayerNorm(dim, eps=1e-6) if cross_attention else None
        # exact (erf) GELU: on CPU it is ~5x faster than the tanh approximation
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(
        self, x: Tensor, c: Tensor, rope: tuple[Tensor, Tensor], plan: Optional[AttnPlan] = None,
        cache: Optional[LayerKV] = None, write: bool = False, keep_from: int = 0,
        words: Optional[tuple[Tensor, Tensor]] = None,
    ) -> Tensor:
        """`x (B, F, P, D)`, `c (B, F, D)` -> `(B, F − keep_from, P, D)`.

        Frames before `keep_from` still provide keys/values (and cache writes)
        but get no output: the last block runs only what the caller reads.
        `words`: the prompt's word tokens `(B, T, D)` and their mask `(B, T)`, read by the cross-attention
        (after self-attention, before the MLP, as in PixArt-α) of a block built with it.
        """
        b, f, p, d = x.shape
        sh1, sc1, *rest = self.ada(c).unsqueeze(2).chunk(6, dim=-1)  # each (B, F, 1, D)
        g1, sh2, sc2, g2 = (m[:, keep_from:] for m in rest)
        h = _modulate(self.norm1(x), sh1, sc1).reshape(b, f * p, d)
        attn = self.attn(h, rope, plan, cache, write, q_from=keep_from * p)
        x = x[:, keep_from:]
        if x.shape[1] == 0:
            return x
        x = x + g1 * attn.view(b, f - keep_from, p, d)
        if self.cross is not None and self.norm_x is not None:
            if words is None:
                raise ValueError("this block reads the prompt's word tokens: give text as (B, words, text_dim)")
            f_out = x.shape[1]
            x = x + self.cross(self.norm_x(x).reshape(b, f_out * p, d), *words).view(b, f_out, p, d)
        return x + g2 * self.mlp(_modulate(self.norm2(x), sh2, sc2))


class FinalLayer(nn.Module):
    """adaLN + linear to patch pixels; zero-initialised so the untrained student predicts v = 0."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)
        for m in (self.ada[1], self.linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """`x (B, F, P, D)`, `c (B, F, D)` -> `(B, F, P, out_dim)`."""
        shift, scale = self.ada(c).unsqueeze(2).chunk(2, dim=-1)
        return self.linear(_modulate(self.norm(x), shift, scale))
