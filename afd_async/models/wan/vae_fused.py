"""One fused kernel for the Wan VAE's RMS norms (torch.compile), for decode speed on the GPU.

The decoder runs at full video resolution, where every elementwise pass is a
pass over a large activation. diffusers' `WanRMS_norm` does five (upcast,
norm reduction, divide, downcast, scale·gamma + bias); compiled, it is one
reduction and one write. Same arithmetic order (float32 normalise, then scale
and affine in the activation dtype), so outputs match to rounding.

Measured on an H100 (benchmarks/RESULTS.md): decode 1.91 s → 1.87 s (2 %), and
dynamo hit its recompile limit on the decoder's many activation shapes. The
decode's time is in cache copies/padding and layout transposes, not in the
norms, so this is **off by default**; `benchmarks/bench_wan_afd.py` keeps the
comparison.
"""

from __future__ import annotations

import types

import torch
from torch import Tensor, nn

__all__ = ["fuse_rms_norms", "unfuse_rms_norms"]


def _rms_norm(x: Tensor, scale: float, gamma: Tensor, bias: Tensor | float, dim: int) -> Tensor:
    xf = x.float()
    y = (xf / xf.norm(dim=dim, keepdim=True).clamp_min(1e-12)).to(x.dtype)
    return y * scale * gamma + bias


_compiled = None


def _fused_forward(self: nn.Module, x: Tensor) -> Tensor:
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(_rms_norm, dynamic=True)
    return _compiled(x, self.scale, self.gamma, self.bias, 1 if self.channel_first else -1)


def fuse_rms_norms(vae: nn.Module) -> int:
    """Route every `WanRMS_norm` of `vae` through the compiled kernel; returns how many."""
    # deferred: diffusers (seconds)
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    n = 0
    for mod in vae.modules():
        if isinstance(mod, WanRMS_norm):
            mod.forward = types.MethodType(_fused_forward, mod)
            n += 1
    return n


def unfuse_rms_norms(vae: nn.Module) -> None:
    """Back to diffusers' own forward."""
    for mod in vae.modules():
        if "forward" in mod.__dict__ and getattr(mod.forward, "__func__", None) is _fused_forward:
            del mod.forward
