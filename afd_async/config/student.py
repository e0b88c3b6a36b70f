"""Student schema (config group `student`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class WanStudentConfig:
    """Real-scale causal Wan2.1-T2V-1.3B student (`kind: wan`); ignored by the tiny student.

    Frames: `num_frames` video frames (4k+1) are (num_frames − 1)/4 + 1 latent frames,
    generated `chunk_frames` latent frames per chunk; height/width are pixels (latent = /8).
    """

    arch: Literal["t2v-1.3b", "tiny"] = "t2v-1.3b"  # transformer + VAE architecture (afd_async/models/wan/config.py); tiny: CPU tests
    generator_checkpoint: Optional[str] = None  # Self-Forcing / Causal-Forcing generator .pt (or original Wan state dict)
    checkpoint_format: Literal["self_forcing", "causal_forcing", "wan"] = "self_forcing"  # layout of generator_checkpoint
    use_ema: bool = True  # take `generator_ema` from the generator checkpoint (what their inference uses)
    vae_checkpoint: Optional[str] = None  # Wan2.1_VAE.pth (original layout) or diffusers-layout safetensors
    text_encoder: Optional[str] = None  # UMT5-XXL: transformers folder or Wan's models_t5_umt5-xxl-enc-bf16.pth; required
    tokenizer: Optional[str] = None  # UMT5 tokenizer folder (google/umt5-xxl); null = the text_encoder folder
    text_len: int = 512  # UMT5 tokens per prompt (Wan: 512; features past the prompt's tokens are zero)
    kv_cache_frames: Optional[int] = None  # attention window in latent frames (rolling eviction); null = global
    finetune: Literal["lora", "full"] = "lora"  # lora: θ/θ_old/θ_ref as adapters on one base; full: deep copies
    lora_rank: int = 64  # LoRA rank of the student's adapters
    lora_alpha: float = 64.0  # LoRA scale numerator (ΔW = alpha/rank · B·A)
    gradient_checkpointing: bool = True  # recompute blocks in backward (see docs/MEMORY.md)
    compile: bool = True  # torch.compile the elementwise kernels (1.3x rollout on H100, benchmarks/RESULTS.md)
    dtype: Literal["bfloat16", "float32"] = "bfloat16"  # parameter/activation dtype on the GPU

    def __post_init__(self) -> None:
        if self.lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1, got {self.lora_rank}")
        if self.text_len < 1:
            raise ValueError(f"text_len must be >= 1, got {self.text_len}")
        if self.kv_cache_frames is not None and self.kv_cache_frames < 1:
            raise ValueError(f"kv_cache_frames must be >= 1 or null, got {self.kv_cache_frames}")


@dataclass
class StudentConfig:
    """The causal autoregressive student.

    The tiny student is pixel-space (latent = RGB in [-1, 1], C = 3): the clip is
    its latent `(C, F, H, W)`.
    """

    kind: Literal["tiny", "wan"] = "tiny"  # which implementation: tiny pixel-space DiT, or causal Wan2.1 (block `wan`)
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
    # per-token cross-attention to the prompt's words in every block (needs text.kind=words), beside the pooled
    # prompt vector in adaLN: issue 15 measured the adaLN-only student ignoring the colour word (benchmarks)
    cross_attention: bool = False
    # the prompt vector, through one linear layer, also added to every patch token at the input (see
    # TinyCausalStudent): the path on which a fresh student learns the colour word in minutes, not never; the
    # shipped student has it (a checkpoint saved before the option existed has not: set false to load one)
    text_to_tokens: bool = True
    timesteps: list[int] = field(default_factory=lambda: [1000, 750, 500, 250])  # denoising steps per chunk (of 1000)
    shift: float = 3.0  # schedule shift: t' = s*t / (1 + (s-1)*t); Self-Forcing uses 5 for Wan, 3 keeps the tiny student's last step less noisy
    checkpoint: Optional[str] = None  # path to a safetensors checkpoint to start from ("pretrained" = the shipped one)
    wan: WanStudentConfig = field(default_factory=WanStudentConfig)  # kind=wan only

    def __post_init__(self) -> None:
        if self.kind == "wan":
            self._check_wan()
            return
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

    def _check_wan(self) -> None:
        if (self.num_frames - 1) % 4:
            raise ValueError(f"Wan clips have 4k+1 frames (VAE: 4x temporal), got num_frames={self.num_frames}")
        latent = (self.num_frames - 1) // 4 + 1
        if latent % self.chunk_frames:
            raise ValueError(f"{latent} latent frames (num_frames={self.num_frames}) must split into chunks of "
                             f"chunk_frames={self.chunk_frames} latent frames")
        if self.height % 16 or self.width % 16:
            raise ValueError(f"Wan height/width ({self.height}x{self.width}) must be multiples of 16 (VAE 8 x patch 2)")
        if not self.timesteps or any(not 0 < t <= 1000 for t in self.timesteps):
            raise ValueError(f"timesteps must be a non-empty list in (0, 1000], got {self.timesteps}")
        if self.shift <= 0:
            raise ValueError(f"shift must be > 0, got {self.shift}")
