"""KV cache (rolling) and cross-attention cache for the causal Wan student.

Self-Forcing-style rollout keeps, per transformer block, the keys/values of the
clean frames generated so far. The buffer is allocated once for `capacity`
latent frames (the attention window, current chunk included) and written in
place, so a denoising step costs no concatenation: the current chunk's keys are
written just past the valid prefix and attention reads `[0, valid + chunk)`.
The write only *commits* (advances `valid`) on the clean pass at t = 0.

When a long video fills the buffer, the oldest frames are evicted (a rolling
window: frame `f` is attended to by chunk k only while it is among the
`capacity − chunk` frames before chunk k). Keys keep their absolute RoPE
positions, so eviction needs no re-rotation.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["RollingKVCache", "CrossAttnCache"]


class RollingKVCache:
    """Per-block keys/values `(B, H, capacity·P, Dh)` of the committed clean frames.

    Args:
        num_blocks: transformer blocks.
        capacity_frames: attention window in latent frames, the current chunk included.
        tokens_per_frame: P, tokens of one latent frame (1560 at 480×832).
        chunk_frames: latent frames per chunk (the largest write).
    """

    def __init__(self, num_blocks: int, *, capacity_frames: int, tokens_per_frame: int, chunk_frames: int) -> None:
        if capacity_frames < 2 * chunk_frames:
            raise ValueError(f"capacity_frames ({capacity_frames}) must hold at least two chunks of {chunk_frames}")
        self.num_blocks, self.capacity_frames = num_blocks, capacity_frames
        self.tokens_per_frame, self.chunk_frames = tokens_per_frame, chunk_frames
        self.k: list[Optional[Tensor]] = [None] * num_blocks
        self.v: list[Optional[Tensor]] = [None] * num_blocks
        self.valid_frames = 0  # committed clean frames in the buffer
        self.evicted_frames = 0  # frames dropped from the front so far

    def _alloc(self, i: int, like: Tensor) -> None:
        b, h, _, d = like.shape
        shape = (b, h, self.capacity_frames * self.tokens_per_frame, d)
        self.k[i] = like.new_empty(shape)
        self.v[i] = like.new_empty(shape)

    def make_room(self, frames: int) -> None:
        """Evict the oldest frames so that `frames` more fit behind the committed ones."""
        over = self.valid_frames + frames - self.capacity_frames
        if over <= 0:
            return
        drop, keep = over * self.tokens_per_frame, (self.valid_frames - over) * self.tokens_per_frame
        for buf in (*self.k, *self.v):
            if buf is not None and keep > 0:
                buf[:, :, :keep].copy_(buf[:, :, drop : drop + keep].clone())
        self.valid_frames -= over
        self.evicted_frames += over

    def attend_kv(self, i: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Place the current chunk's `k, v (B, H, L, Dh)` after the committed frames; return the window.

        Returns:
            `(K, V)` views `(B, H, valid·P + L, Dh)`: committed frames then the chunk.
        """
        if self.k[i] is None:
            self._alloc(i, k)
        start = self.valid_frames * self.tokens_per_frame
        end = start + k.shape[2]
        self.k[i][:, :, start:end] = k
        self.v[i][:, :, start:end] = v
        return self.k[i][:, :, :end], self.v[i][:, :, :end]

    def commit(self, frames: int) -> None:
        """Mark the last written `frames` (the clean pass) as context for later chunks."""
        self.valid_frames += frames


class CrossAttnCache:
    """Per-block text keys/values `(B, H, L_text, Dh)`: the prompt is fixed during a rollout."""

    def __init__(self, num_blocks: int) -> None:
        self.kv: list[Optional[tuple[Tensor, Tensor]]] = [None] * num_blocks

    def get(self, i: int) -> Optional[tuple[Tensor, Tensor]]:
        return self.kv[i]

    def put(self, i: int, k: Tensor, v: Tensor) -> None:
        self.kv[i] = (k, v)


def window_start(chunk_start_frame: int, capacity_frames: Optional[int], chunk_frames: int) -> int:
    """First clean frame a chunk starting at `chunk_start_frame` may attend to (rolling window)."""
    if capacity_frames is None:
        return 0
    return max(0, chunk_start_frame - (capacity_frames - chunk_frames))


def chunk_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Dense SDPA `(B, H, Lq, Dh)` × `(B, H, Lk, Dh)`; flash / cuDNN kernels on Hopper, math on CPU."""
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)
