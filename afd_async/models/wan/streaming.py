"""Decode a causal rollout chunk by chunk, overlapped with the generation of the next chunk.

The Wan VAE decoder is causal in time: `AutoencoderKLWan._decode` runs it one
latent frame at a time, carrying a per-convolution feature cache. Keeping that
cache across calls decodes chunk k as soon as the student has finished it —
the same frames as one decode of the whole clip (the test checks it). On a GPU
the chunk's decode is issued on a side stream while the main stream generates
chunk k+1, so the two interleave instead of running back to back.

This relies on diffusers' decoder calling convention (`decoder(x, feat_cache,
feat_idx, first_chunk)`, `clear_cache`, `_feat_map`, `_conv_idx`), which
`AutoencoderKLWan._decode` itself uses (diffusers 0.42).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

__all__ = ["StreamingDecoder", "rollout_video"]


class StreamingDecoder:
    """Chunk-wise decode with the VAE's causal cache carried between chunks.

    Args:
        wan_vae: a `WanVAE` (latent normalisation + `AutoencoderKLWan`).
    """

    def __init__(self, wan_vae: nn.Module) -> None:
        self.wan_vae, self.vae = wan_vae, wan_vae.vae
        if getattr(self.vae.config, "patch_size", None) is not None:
            raise ValueError("streaming decode supports Wan2.1's VAE (no output patching)")
        self._first = True

    def reset(self) -> None:
        """Start a new clip."""
        self.vae.clear_cache()
        self._first = True

    @torch.no_grad()
    def decode_chunk(self, latents: Tensor) -> Tensor:
        """Normalised latents `(B, C, f, h, w)` of the next frames → video `(B, 3, T, H, W)` in [-1, 1]
        (T = 4f, or 4f − 3 for the clip's first chunk)."""
        vae = self.vae
        z = latents.float() * self.wan_vae.std + self.wan_vae.mean
        x = vae.post_quant_conv(z.to(vae.dtype))  # 1×1×1: no temporal state
        outs = []
        for i in range(x.shape[2]):
            vae._conv_idx = [0]
            outs.append(vae.decoder(x[:, :, i : i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                                    first_chunk=self._first))
            self._first = False
        return torch.cat(outs, dim=2).clamp(-1, 1)


def rollout_video(policy: Any, decoder: StreamingDecoder, text: Tensor, *, overlap: bool = True,
                  **rollout_kwargs: Any) -> tuple[Tensor, Tensor]:
    """Roll out `policy` (a Wan student or policy view) and decode each chunk as soon as it is final.

    With `overlap` on a CUDA device the decode runs on a side stream, concurrent
    with the next chunk's denoising; otherwise chunks decode in line.

    Returns:
        (latents `(B, C, F, h, w)`, video `(B, 3, 4(F−1)+1, H, W)` float32 in [-1, 1]).
    """
    decoder.reset()
    parts: list[Tensor] = []
    side: Optional[torch.cuda.Stream] = None
    if overlap and text.is_cuda:
        side = torch.cuda.Stream(device=text.device)

    def on_chunk(_k: int, x0: Tensor) -> None:
        if side is None:
            parts.append(decoder.decode_chunk(x0))
            return
        side.wait_stream(torch.cuda.current_stream())  # x0 is complete on the main stream
        with torch.cuda.stream(side):
            out = decoder.decode_chunk(x0)
        x0.record_stream(side)
        parts.append(out)

    latents = policy.rollout(text, on_chunk=on_chunk, **rollout_kwargs)
    if side is not None:
        torch.cuda.current_stream().wait_stream(side)
        for p in parts:
            p.record_stream(torch.cuda.current_stream())
    return latents, torch.cat(parts, dim=2).float()
