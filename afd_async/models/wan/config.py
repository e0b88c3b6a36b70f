"""Architecture constants of the Wan2.1-T2V-1.3B-class causal student (diffusers config kwargs).

These are the `WanTransformer3DModel` constructor kwargs of Wan2.1-T2V-1.3B
(what Self-Forcing and Causal-Forcing fine-tune): 30 blocks of width 1536
(12 heads × 128), FFN 8960, UMT5-XXL text features of size 4096. The latent
grid at 480×832 is 60×104 (VAE ×8 spatial), 1560 tokens per latent frame after
the 1×2×2 patch; 81 frames are 21 latent frames (VAE ×4 temporal, first frame alone).
"""

from __future__ import annotations

from typing import Any

__all__ = ["WAN_T2V_1_3B", "TINY_WAN", "TINY_WAN_VAE", "ARCHS", "latent_frames", "pixel_frames"]

WAN_T2V_1_3B: dict[str, Any] = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)

TINY_WAN: dict[str, Any] = dict(
    WAN_T2V_1_3B, num_attention_heads=2, attention_head_dim=12, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2,
    in_channels=4, out_channels=4,
)
"""A CPU-test-sized Wan transformer with the same structure (head dim 12 splits into RoPE t/h/w = 4/4/4)."""


TINY_WAN_VAE: dict[str, Any] = dict(base_dim=8, z_dim=4, latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
"""`AutoencoderKLWan` kwargs of a CPU-test VAE with Wan's compression (8x spatial, 4x temporal) and TINY_WAN's 4 channels."""

ARCHS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "t2v-1.3b": (WAN_T2V_1_3B, {}),  # diffusers' AutoencoderKLWan defaults are Wan2.1's VAE
    "tiny": (TINY_WAN, TINY_WAN_VAE),
}
"""`student.wan.arch` → (transformer kwargs, VAE kwargs)."""


def latent_frames(pixel_frames_: int) -> int:
    """Wan VAE temporal compression: 1 + (F − 1)/4 latent frames (81 → 21)."""
    if (pixel_frames_ - 1) % 4:
        raise ValueError(f"Wan clips have 4k+1 frames, got {pixel_frames_}")
    return 1 + (pixel_frames_ - 1) // 4


def pixel_frames(latent_frames_: int) -> int:
    """Inverse of `latent_frames` (21 → 81)."""
    return 1 + 4 * (latent_frames_ - 1)
