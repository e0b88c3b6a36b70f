"""The rollout's KV cache: per-layer keys/values of the clean chunks generated so far.

Self-Forcing's causal rollout keeps the cache explicit: for each chunk it
denoises with the cache *read-only* (the noisy chunk attends to the cache and to
itself), then runs the finished clean chunk once at t = 0 with `write=True`,
which appends that chunk's keys/values to every layer. The training forward's
clean stream computes exactly these keys/values, which is why the two paths
agree (see `TinyCausalStudent`).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["LayerKV", "KVCache"]


class LayerKV:
    """Keys and values of one attention layer, `(B, heads, L, head_dim)` each (keys already rotated)."""

    def __init__(self) -> None:
        self.keys: Optional[Tensor] = None
        self.values: Optional[Tensor] = None

    def append(self, k: Tensor, v: Tensor) -> None:
        """Append along the token axis."""
        if self.keys is None or self.values is None:
            self.keys, self.values = k, v
        else:
            self.keys = torch.cat([self.keys, k], dim=2)
            self.values = torch.cat([self.values, v], dim=2)

    @property
    def length(self) -> int:
        """Number of cached tokens."""
        return 0 if self.keys is None else int(self.keys.shape[2])


class KVCache:
    """One `LayerKV` per transformer block, plus how many clean frames they hold.

    Args:
        depth: number of transformer blocks.
    """

    def __init__(self, depth: int) -> None:
        self.layers = [LayerKV() for _ in range(depth)]
        self.num_frames = 0

    def __getitem__(self, i: int) -> LayerKV:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def reset(self) -> None:
        """Forget everything (a new rollout)."""
        self.layers = [LayerKV() for _ in self.layers]
        self.num_frames = 0
