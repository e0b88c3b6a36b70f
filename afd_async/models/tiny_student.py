"""Tiny pixel-space causal autoregressive student (Self-Forcing style) for CPU runs.

The clip `(B, C, F, H, W)` (RGB in [-1, 1], C = 3) is generated chunk by chunk
(`chunk_frames` frames each). Within a chunk attention is bidirectional; across
chunks it is causal (block-causal DiT). The network predicts the rectified-flow
velocity v = ε − x0, so x0 = x_t − t·v.

Two ways to run it, computing the same numbers:

- **Training (teacher forcing), `forward`**: one pass over two streams of
  tokens, the noisy clip (each chunk at its own t) and the clean clip (t = 0).
  Noisy chunk k attends to clean chunks < k and to itself; clean chunk j attends
  to clean chunks ≤ j. Noisy chunks never see each other, so each chunk's output
  depends only on its own noise level and the clean past.
- **Generation, `rollout`**: per chunk, fresh noise and `len(timesteps)`
  denoising steps on the shifted schedule, re-noising the x0 prediction with
  fresh noise to the next level (Self-Forcing); then the clamped clean chunk is
  run once at t = 0 to write its keys/values to the KV cache. `use_cache=False`
  instead recomputes the clean context with the training attention pattern at every step:
  the oracle the cache must reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from afd_async.models.blocks import AttnPlan, DiTBlock, FinalLayer, TemporalRope, TimestepEmbedder, sincos_2d
from afd_async.models.kv_cache import KVCache
from afd_async.models.text_encoder import pool_words
from afd_async.models.schedule import rollout_sigmas

__all__ = ["StudentTrajectory", "TextCond", "TinyCausalStudent"]


class TextCond(NamedTuple):
    """The prompt as the blocks read it: `c (B, D)` added to the noise-level embedding for adaLN, with
    cross-attention the word tokens `(B, T, D)` and their mask `(B, T)`, and with `text_to_tokens` the vector
    `(B, D)` added to every patch token at the input."""

    c: Tensor
    words: Optional[tuple[Tensor, Tensor]]
    tokens: Optional[Tensor] = None


@dataclass
class StudentTrajectory:
    """What one rollout visited, for checks and trajectory-level objectives.

    Attributes:
        x0: `(B, C, F, H, W)` the clamped clean rollout (what `rollout` returns).
        x_t: `(S, B, C, F, H, W)` the noisy input of denoising step s for every chunk.
        v: `(S, B, C, F, H, W)` the predicted velocity at step s.
        sigmas: the S noise levels (shared by all chunks).
    """

    x0: Tensor
    x_t: Tensor
    v: Tensor
    sigmas: list[float]


class TinyCausalStudent(nn.Module):
    """Block-causal DiT over frame patches with adaLN-Zero conditioning on (t, prompt).

    Args:
        channels: latent channels (3: the tiny student is pixel space).
        height, width: frame size in pixels (multiples of `patch_size`).
        chunk_frames: frames per autoregressive chunk.
        patch_size: spatial patch edge; tokens per frame = (H/p)·(W/p).
        dim, depth, heads, mlp_ratio: transformer width, blocks, heads, MLP expansion.
        text_dim: size of the prompt (sentence) embedding, or of each word token when text is `(B, T, text_dim)`
            (`text.kind=words`; zero rows are padding): adaLN then reads the mean of the words.
        cross_attention: every block also attends to the word tokens (text must be `(B, T, text_dim)`).
        text_to_tokens: the prompt vector (the word mean for word tokens), through one linear layer, is also added
            to every patch token at the input. adaLN alone reads the prompt only through a per-channel modulation
            of a condition dominated by the noise level, and from a fresh init it does not learn the colour word
            (issue 15: 3000 steps of fitting 8 prompts that differ only in colour still paint one mean colour at
            t = 1); on the token path the same fit paints each prompt's colour by step 1000
            (`benchmarks/colour_overfit.py`, `results/colour_sweep_h100.json`). Its weights start at std 1 so the
            (unit-norm) prompt enters on the scale of a patch embedding, not at zero.
        max_frames: longest clip `rollout` accepts (time positions are RoPE, so
            this is a guard on memory, not a table size).
        prediction: what the output layer predicts. `x0` (default): the clean
            chunk, converted to v = (x_t − x0)/max(t, t_min). A patch holds more
            numbers (C·p²) than the width `dim`, so a v-predicting head cannot
            carry the noise ε through that bottleneck and its x0 = x_t − t·v stays
            noisy; predicting x0 has no such floor (as in "Back to Basics: Let
            Denoising Generative Models Denoise", Li & He 2025). `v`: direct velocity.
    """

    def __init__(
        self, *, channels: int = 3, height: int, width: int, chunk_frames: int, patch_size: int, dim: int,
        depth: int, heads: int, mlp_ratio: float, text_dim: int, max_frames: int = 64,
        prediction: str = "x0", t_min: float = 0.05, cross_attention: bool = False, text_to_tokens: bool = False,
    ) -> None:
        super().__init__()
        if height % patch_size or width % patch_size:
            raise ValueError(f"height/width ({height}x{width}) must be multiples of patch_size ({patch_size})")
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim ({dim}) must split into {heads} heads of even size")
        self.config: dict[str, Any] = dict(
            channels=channels, height=height, width=width, chunk_frames=chunk_frames, patch_size=patch_size,
            dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, text_dim=text_dim, max_frames=max_frames,
            prediction=prediction, t_min=t_min, cross_attention=cross_attention, text_to_tokens=text_to_tokens,
        )
        if prediction not in ("x0", "v"):
            raise ValueError(f"prediction must be 'x0' or 'v', got {prediction!r}")
        self.prediction, self.t_min = prediction, t_min
        self.channels, self.height, self.width = channels, height, width
        self.chunk_frames, self.patch_size, self.max_frames = chunk_frames, patch_size, max_frames
        self.grid = (height // patch_size, width // patch_size)
        self.tokens_per_frame = self.grid[0] * self.grid[1]

        self.patch_embed = nn.Linear(channels * patch_size**2, dim)
        self.register_buffer("pos_embed", sincos_2d(dim, *self.grid), persistent=False)
        self.t_embed = TimestepEmbedder(dim)
        self.text_embed = nn.Sequential(nn.Linear(text_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.rope = TemporalRope(dim // heads)
        self.blocks = nn.ModuleList(DiTBlock(dim, heads, mlp_ratio, cross_attention) for _ in range(depth))
        self.word_embed = nn.Linear(text_dim, dim) if cross_attention else None
        self.text_tokens = nn.Linear(text_dim, dim) if text_to_tokens else None
        self.final = FinalLayer(dim, channels * patch_size**2)
        nn.init.xavier_uniform_(self.patch_embed.weight)
        nn.init.zeros_(self.patch_embed.bias)
        for m in (self.text_embed[0], self.text_embed[2]):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        if self.text_tokens is not None:
            nn.init.normal_(self.text_tokens.weight, std=1.0)
            nn.init.zeros_(self.text_tokens.bias)
        self._plans: dict[tuple[int, int, int], AttnPlan] = {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TinyCausalStudent":
        """Rebuild from `self.config` (as saved in a checkpoint's metadata)."""
        return cls(**config)

    # ------------------------------------------------------------------ pieces

    def _patchify(self, x: Tensor) -> Tensor:
        """`(B, C, F, H, W)` -> `(B, F, P, C·p·p)`."""
        b, c, f, _, _ = x.shape
        (gh, gw), p = self.grid, self.patch_size
        x = x.reshape(b, c, f, gh, p, gw, p).permute(0, 2, 3, 5, 1, 4, 6)
        return x.reshape(b, f, gh * gw, c * p * p)

    def _unpatchify(self, x: Tensor) -> Tensor:
        """`(B, F, P, C·p·p)` -> `(B, C, F, H, W)`."""
        b, f = x.shape[:2]
        (gh, gw), p, c = self.grid, self.patch_size, self.channels
        x = x.reshape(b, f, gh, gw, c, p, p).permute(0, 4, 1, 2, 5, 3, 6)
        return x.reshape(b, c, f, gh * p, gw * p)

    def _condition(self, text: Tensor) -> TextCond:
        """`(B, text_dim)` or word tokens `(B, T, text_dim)` -> what the blocks read."""
        if text.ndim == 2:
            if self.word_embed is not None:
                raise ValueError("this student reads the prompt's words: give text as (B, words, text_dim) "
                                 "(text.kind=words), not one vector a prompt")
            return TextCond(self.text_embed(text), None, self._tokens(text))
        pooled, mask = pool_words(text)
        words = (self.word_embed(text), mask) if self.word_embed is not None else None
        return TextCond(self.text_embed(pooled), words, self._tokens(pooled))

    def _tokens(self, prompt: Tensor) -> Optional[Tensor]:
        return self.text_tokens(prompt) if self.text_tokens is not None else None

    def _run(
        self, x: Tensor, t_frames: Tensor, text_c: TextCond, frames: Tensor, *, plan: Optional[AttnPlan] = None,
        cache: Optional[KVCache] = None, write: bool = False, out_from: Optional[int] = 0,
    ) -> Optional[Tensor]:
        """Transformer over frames `x (B, C, F, H, W)` at levels `t_frames (B, F)` and time positions `frames (F,)`.

        Returns v `(B, C, F − out_from, H, W)` of the frames from `out_from` on,
        or None when `out_from is None` (a cache-writing pass needs no output).
        The last block computes only those frames; earlier ones only serve as keys/values there.
        """
        h = self.patch_embed(self._patchify(x)) + self.pos_embed.to(x.dtype)
        if text_c.tokens is not None:
            h = h + text_c.tokens[:, None, None]
        c = self.t_embed(t_frames) + text_c.c[:, None]
        rope = self.rope.cos_sin(frames, self.tokens_per_frame, h.dtype)
        last = len(self.blocks) - 1
        keep = h.shape[1] if out_from is None else out_from
        for i, block in enumerate(self.blocks):
            h = block(h, c, rope, plan, cache[i] if cache is not None else None, write, keep if i == last else 0,
                      text_c.words)
        if out_from is None:
            return None
        out = self._unpatchify(self.final(h, c[:, out_from:]))
        if self.prediction == "x0":
            t_out = t_frames[:, out_from:].clamp_min(self.t_min).to(out.dtype)[:, None, :, None, None]
            out = (x[:, :, out_from:] - out) / t_out
        return out

    def _stream_plan(self, n_clean: int, n_noisy: int, start: int) -> AttnPlan:
        """Attention plan over tokens [clean chunks 0..n_clean−1 | noisy chunks start..start+n_noisy−1].

        Clean chunk j attends to clean chunks ≤ j; noisy chunk k attends to clean
        chunks < k and to itself (never to other noisy chunks).
        """
        key = (n_clean, n_noisy, start)
        if key not in self._plans:
            size = self.chunk_frames * self.tokens_per_frame
            plan = [(slice(j * size, (j + 1) * size), (slice(0, (j + 1) * size),)) for j in range(n_clean)]
            for i in range(n_noisy):
                own = slice((n_clean + i) * size, (n_clean + i + 1) * size)
                past = min(start + i, n_clean) * size
                plan.append((own, ((slice(0, past), own) if past else (own,))))
            self._plans[key] = plan
        return self._plans[key]

    def _teacher_forced(self, noisy: Tensor, t: Tensor, start: int, clean: Tensor, text_c: TextCond) -> Tensor:
        """v for noisy chunks `start, start+1, …` given clean chunks `0 … clean.shape[2]/cf − 1` as context.

        Args:
            noisy: `(B, C, n·cf, H, W)`; t: `(B, n)` its per-chunk levels.
            clean: `(B, C, m·cf, H, W)` clean context (m may be 0).

        Returns:
            v `(B, C, n·cf, H, W)`.
        """
        cf = self.chunk_frames
        b, fn, fc = noisy.shape[0], noisy.shape[2], clean.shape[2]
        x = torch.cat([clean, noisy], dim=2)
        t_frames = torch.cat([t.new_zeros(b, fc), t.repeat_interleave(cf, dim=1)], dim=1).to(x.dtype)
        frames = torch.cat([torch.arange(fc), start * cf + torch.arange(fn)]).to(x.device)
        plan = self._stream_plan(fc // cf, fn // cf, start)
        return self._run(x, t_frames, text_c, frames, plan=plan, out_from=fc)

    # ------------------------------------------------------------------ public

    def forward(self, x_t: Tensor, t: Tensor, text: Tensor, clean: Tensor) -> Tensor:
        """Teacher-forcing training forward.

        Args:
            x_t: `(B, C, F, H, W)` noisy clip, chunk k noised to level `t[:, k]`.
            t: `(B, n_chunks)` per-chunk noise level in [0, 1].
            text: `(B, text_dim)` prompt embedding (or word tokens `(B, T, text_dim)`).
            clean: `(B, C, F, H, W)` the clean clip used as causal context (the
                last chunk is never anyone's context, so it is not computed).

        Returns:
            v `(B, C, F, H, W)`: chunk k's velocity given clean chunks < k.
        """
        b, c, f, h, w = x_t.shape
        n = f // self.chunk_frames
        if (c, h, w) != (self.channels, self.height, self.width) or f % self.chunk_frames:
            raise ValueError(f"x_t {tuple(x_t.shape)} does not fit (B, {self.channels}, k·{self.chunk_frames}, "
                             f"{self.height}, {self.width})")
        if clean.shape != x_t.shape or tuple(t.shape) != (b, n):
            raise ValueError(f"clean {tuple(clean.shape)} must equal x_t's shape and t {tuple(t.shape)} be ({b}, {n})")
        return self._teacher_forced(x_t, t, 0, clean[:, :, : f - self.chunk_frames], self._condition(text))

    def decode(self, latents: Tensor) -> Tensor:
        """Latents → RGB video: this student is pixel-space, so its latent *is* the video (same tensor)."""
        return latents

    @torch.no_grad()
    def rollout(
        self, text: Tensor, *, generator: torch.Generator, timesteps: Sequence[int], shift: float, num_frames: int,
        use_cache: bool = True, return_trajectory: bool = False,
    ) -> Union[Tensor, StudentTrajectory]:
        """Generate clips chunk by chunk (Self-Forcing few-step causal sampling).

        Noise is drawn on the generator's device in a fixed order (per chunk: the
        initial noise, then one re-noising draw per step but the last), the same
        with and without cache, so both paths give the same clip for one seed.

        Args:
            text: `(B, text_dim)` prompt embeddings.
            generator: source of all noise.
            timesteps: levels on the 0..1000 grid (shifted by `rollout_sigmas`).
            shift: schedule shift.
            num_frames: multiple of `chunk_frames`, at most `max_frames`; may exceed
                the training length.
            use_cache: False recomputes the full clean context every step (oracle).
            return_trajectory: return a `StudentTrajectory` instead of the clip.

        Returns:
            x0 `(B, C, num_frames, H, W)` in [-1, 1] (or the trajectory).
        """
        cf = self.chunk_frames
        if num_frames % cf or not 0 < num_frames <= self.max_frames:
            raise ValueError(f"num_frames ({num_frames}) must be a positive multiple of {cf} and <= {self.max_frames}")
        sigmas = rollout_sigmas(timesteps, shift)
        p = next(self.parameters())
        b, shape = text.shape[0], (text.shape[0], self.channels, cf, self.height, self.width)
        text_c = self._condition(text.to(p.device, p.dtype))
        cache = KVCache(len(self.blocks)) if use_cache else None
        chunks: list[Tensor] = []
        xs: list[list[Tensor]] = [[] for _ in sigmas]
        vs: list[list[Tensor]] = [[] for _ in sigmas]

        def noise() -> Tensor:
            return torch.randn(shape, generator=generator, device=generator.device, dtype=p.dtype).to(p.device)

        for k in range(num_frames // cf):
            x = noise()
            frames = torch.arange(k * cf, (k + 1) * cf, device=p.device)
            for i, s in enumerate(sigmas):
                t = torch.full((b, 1), s, device=p.device, dtype=p.dtype)
                if cache is not None:
                    v = self._run(x, t.expand(b, cf), text_c, frames, cache=cache)
                else:
                    context = torch.cat(chunks, dim=2) if chunks else x[:, :, :0]
                    v = self._teacher_forced(x, t, k, context, text_c)
                xs[i].append(x)
                vs[i].append(v)
                x0 = x - s * v
                if i + 1 < len(sigmas):
                    x = (1 - sigmas[i + 1]) * x0 + sigmas[i + 1] * noise()
            x0 = x0.clamp(-1, 1)
            chunks.append(x0)
            if cache is not None and (k + 1) * cf < num_frames:  # the last chunk is nobody's context
                self._run(x0, x0.new_zeros(b, cf), text_c, frames, cache=cache, write=True, out_from=None)
                cache.num_frames += cf
        video = torch.cat(chunks, dim=2)
        if not return_trajectory:
            return video
        return StudentTrajectory(
            x0=video,
            x_t=torch.stack([torch.cat(x, dim=2) for x in xs]),
            v=torch.stack([torch.cat(v, dim=2) for v in vs]),
            sigmas=sigmas,
        )
