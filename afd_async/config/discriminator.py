"""Discriminator schema (config group `discriminator`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class VideoRewardConfig:
    """VideoReward discriminator (`kind: videoreward`): Qwen2-VL-2B + LoRA + scalar reward head."""

    backbone_path: Optional[str] = None  # Qwen2-VL-2B-Instruct folder (transformers layout, with its tokenizer); required
    init_from: Optional[str] = None  # VideoReward checkpoint folder (checkpoint-<step>/adapter_model.safetensors + non_lora_state_dict.pth)
    lora_rank: int = 64  # LoRA rank on the language model (VideoReward: 64)
    lora_alpha: float = 128.0  # LoRA alpha (VideoReward: 128)
    sample_fps: float = 2.0  # frames per second fed to the VLM (VideoReward: 2)
    max_pixels: int = 200704  # per-frame pixel budget (448*448); frames are resized to multiples of 28 within it
    gradient_checkpointing: bool = True  # recompute LLM layers in backward
    dtype: Literal["bfloat16", "float32"] = "bfloat16"  # backbone dtype on the GPU

    def __post_init__(self) -> None:
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0 (0 = head only), got {self.lora_rank}")
        if self.sample_fps <= 0 or self.max_pixels < 4 * 28 * 28:
            raise ValueError(f"sample_fps must be > 0 and max_pixels >= {4 * 28 * 28}")


@dataclass
class DiscriminatorConfig:
    """The prompt-conditioned video discriminator D_φ(clip, prompt) -> scalar."""

    kind: Literal["tiny", "videoreward"] = "tiny"  # which implementation: tiny 3D conv, or VideoReward (block `videoreward`)
    channels: int = 32  # base width of the spatiotemporal conv trunk
    depth: int = 3  # number of downsampling 3D-conv stages
    # tiny: pool space only, add the prompt at every time step, read the sequence with temporal convs, then pool
    # time (False: pool time and space first, the original head, which ignores event order and, often, the prompt)
    temporal_head: bool = False
    checkpoint: Optional[str] = None  # tiny: safetensors; videoreward: an AFD discriminator.pt (LoRA + rm_head) to resume
    videoreward: VideoRewardConfig = field(default_factory=VideoRewardConfig)  # kind=videoreward only

    def __post_init__(self) -> None:
        if self.channels < 1 or self.depth < 1:
            raise ValueError("channels and depth must be >= 1")
