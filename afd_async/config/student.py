"""Student schema (config group `student`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class StudentConfig:
    """The causal autoregressive student.

    The tiny student is pixel-space (latent = RGB in [-1, 1], C = 3): the clip is
    its latent `(C, F, H, W)`.
    """

    kind: Literal["tiny"] = "tiny"  # which implementation; real-scale kinds come with their own block
    height: int = 32  # student frame height in pixels
    width: int = 32  # student frame width in pixels
    num_frames: int = 16  # frames per training clip (a multiple of chunk_frames)
    fps: float = 8.0  # student frames per second; teacher clips are resampled to it
    chunk_frames: int = 4  # frames generated per autoregressive chunk
    patch_size: int = 8  # spatial patch edge (tokens per frame = (H/p)*(W/p)); 8 keeps a CPU step under a second
    dim: int = 128  # transformer width
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads
    mlp_ratio: float = 4.0  # MLP hidden = dim * mlp_ratio
    timesteps: list[int] = field(default_factory=lambda: [1000, 750, 500, 250])  # denoising steps per chunk (of 1000)
    shift: float = 3.0  # schedule shift: t' = s*t / (1 + (s-1)*t); Self-Forcing uses 5 for Wan, 3 keeps the tiny student's last step less noisy
    checkpoint: Optional[str] = None  # path to a safetensors checkpoint to start from ("pretrained" = the shipped one)

    def __post_init__(self) -> None:
        if self.num_frames % self.chunk_frames:
            raise ValueError(f"num_frames ({self.num_frames}) must be a multiple of chunk_frames ({self.chunk_frames})")
        if self.height % self.patch_size or self.width % self.patch_size:
            raise ValueError(f"height/width ({self.height}x{self.width}) must be multiples of patch_size ({self.patch_size})")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if not self.timesteps or any(not 0 < t <= 1000 for t in self.timesteps):
            raise ValueError(f"timesteps must be a non-empty list in (0, 1000], got {self.timesteps}")
        if list(self.timesteps) != sorted(self.timesteps, reverse=True):
            raise ValueError(f"timesteps must be decreasing, got {self.timesteps}")
        if self.shift <= 0:
            raise ValueError(f"shift must be > 0, got {self.shift}")
