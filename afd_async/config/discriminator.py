"""Discriminator schema (config group `discriminator`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class DiscriminatorConfig:
    """The prompt-conditioned video discriminator D_φ(clip, prompt) -> scalar."""

    kind: Literal["tiny"] = "tiny"  # which implementation
    channels: int = 32  # base width of the spatiotemporal conv trunk
    depth: int = 3  # number of downsampling 3D-conv stages
    checkpoint: Optional[str] = None  # path to a safetensors checkpoint to start from

    def __post_init__(self) -> None:
        if self.channels < 1 or self.depth < 1:
            raise ValueError("channels and depth must be >= 1")
