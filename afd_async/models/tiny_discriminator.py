"""Tiny prompt-conditioned spatiotemporal discriminator D_φ(clip, prompt) -> scalar.

It must judge *motion* (is this how a ball falls?), not only single frames, so
the trunk is 3D convolutional and its input carries frame differences next to
the frames. The prompt enters by FiLM on every stage and by a final
feature·text projection, because what counts as correct motion depends on the
prompt ("bounces twice" vs "slides and stops").

Two heads (`temporal_head`):

- `False` (the original): features mean-pooled over time and space, then a
  scalar head plus a feature·text product. Pooling over time throws away the
  order of events, so a clip shuffled in time looks like "more motion", and
  the zero-initialised FiLM lets D ignore the prompt (issue 15 measured both).
- `True`: features pooled over space only, a `(B, C, F')` sequence; the prompt
  is projected and added at every time step *before* pooling, two temporal
  convolutions read the sequence in order (which event follows which), and
  only then is time pooled. D can no longer score a clip without its prompt,
  nor an event sequence without its order.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from afd_async.models.text_encoder import pool_words


class _Stage(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int, int], text_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, kernel_size=3, stride=stride, padding=1)
        self.conv2 = nn.Conv3d(c_out, c_out, kernel_size=3, padding=1)
        self.norm1 = nn.GroupNorm(min(8, c_out), c_out)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.film = nn.Linear(text_dim, 2 * c_out)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        scale, shift = self.film(text)[:, :, None, None, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
        return F.silu(self.norm2(self.conv2(h))) + h


class TinyVideoDiscriminator(nn.Module):
    """Scores a clip for a prompt; higher means "more like the teacher".

    Args:
        text_dim: size of the prompt embedding.
        channels: width of the first stage (doubles per stage, capped at 4x).
        depth: number of stages; each halves H and W, stages after the first also halve F.
    """

    def __init__(self, *, text_dim: int, channels: int = 32, depth: int = 3, in_channels: int = 3,
                 temporal_head: bool = False) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(text_dim=text_dim, channels=channels, depth=depth, in_channels=in_channels)
        if temporal_head:  # only when on: checkpoints of the original head keep their saved config
            self.config["temporal_head"] = True
        self.temporal_head = temporal_head
        stages = []
        c_in = 2 * in_channels  # frames + frame differences
        for i in range(depth):
            c_out = channels * min(2**i, 4)
            stride = (1, 2, 2) if i == 0 else (2, 2, 2)
            stages.append(_Stage(c_in, c_out, stride, text_dim))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(c_in, 1)
        # Every loss D or the student sees compares two scores (Bradley–Terry, advantages centred on a mean,
        # the GAN's D(G) − D(x^T)), so a constant shift of the score has gradient 0 in exact arithmetic. In
        # floats that gradient is rounding noise, which Adam scales to lr-sized random steps: the bias walked
        # apart between afd sync and afd run at k = 0 (score_mean off by ~lr_d per D step). It stays at init.
        self.head.bias.requires_grad_(False)
        self.feat_proj = nn.Linear(c_in, 64)
        self.text_proj = nn.Linear(text_dim, 64)
        if temporal_head:
            self.time_text = nn.Linear(text_dim, c_in)  # the prompt, added to every time step before pooling
            self.time_conv1 = nn.Conv1d(c_in, c_in, kernel_size=3, padding=1)
            self.time_conv2 = nn.Conv1d(c_in, c_in, kernel_size=3, padding=1)
            self.time_norm = nn.GroupNorm(min(8, c_in), c_in)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TinyVideoDiscriminator":
        return cls(**config)

    def forward(self, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Score clips.

        Args:
            video: `(B, C, F, H, W)` in [-1, 1].
            text: `(B, text_dim)` prompt embeddings, or word tokens `(B, T, text_dim)` (read as their mean).

        Returns:
            `(B,)` unbounded scores (logits of the Bradley–Terry model).
        """
        if text.ndim == 3:
            text = pool_words(text)[0]
        diff = torch.diff(video, dim=2, prepend=video[:, :, :1])
        h = torch.cat([video, diff], dim=1)
        for stage in self.stages:
            h = stage(h, text)
        if self.temporal_head:
            seq = h.mean(dim=(3, 4)) + self.time_text(text)[:, :, None]  # (B, C, F'): space pooled, time kept
            seq = F.silu(self.time_norm(self.time_conv1(seq)))
            feat = (F.silu(self.time_conv2(seq)) + seq).mean(dim=2)
        else:
            feat = h.mean(dim=(2, 3, 4))
        return self.head(feat).squeeze(-1) + (self.feat_proj(feat) * self.text_proj(text)).sum(-1) / 8.0

    def score(self, video: torch.Tensor, *, prompts: Sequence[str], text: torch.Tensor) -> torch.Tensor:
        """The uniform discriminator call (`DESIGN §2.2` D_φ(x, c)): this D reads the prompt embedding `text`."""
        return self(video, text)


def frames_to_video(frames: torch.Tensor) -> torch.Tensor:
    """uint8 `(B, T, H, W, 3)` -> float `(B, 3, T, H, W)` in [-1, 1] (the tiny student's latent space)."""
    return frames.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def video_to_frames(video: torch.Tensor) -> torch.Tensor:
    """float `(B, 3, T, H, W)` in [-1, 1] -> uint8 `(B, T, H, W, 3)`."""
    return video.clamp(-1, 1).add(1.0).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).contiguous()
