"""Video → Qwen2-VL vision input, in torch (on the GPU, differentiable), as VideoReward feeds it.

VideoReward (VideoAlign) samples frames at 2 fps, resizes each frame to a
multiple of 28 within a pixel budget (keeping the aspect ratio), normalises
with the CLIP mean/std, and cuts `temporal_patch × patch × patch` patches laid
out in merge-window order. Doing it here in torch instead of through the
processor keeps the clip on the device and lets gradients reach the pixels
(the `gan` baseline needs D's gradient w.r.t. the student's video).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CLIP_MEAN", "CLIP_STD", "sample_indices", "budget_size", "video_patches"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def sample_indices(num_frames: int, fps: float, *, sample_fps: float = 2.0, temporal_patch: int = 2,
                   max_frames: int = 64) -> list[int]:
    """Frame indices at `sample_fps` over the clip, rounded to a multiple of `temporal_patch` (at least one patch)."""
    n = round(num_frames / fps * sample_fps)
    n = max(temporal_patch, min(max_frames, n))
    n = int(math.ceil(n / temporal_patch) * temporal_patch)
    return torch.linspace(0, num_frames - 1, n).round().long().tolist()


def budget_size(height: int, width: int, *, max_pixels: int, min_pixels: int = 4 * 28 * 28, factor: int = 28) -> tuple[int, int]:
    """Frame size, multiples of `factor`, aspect kept, `min_pixels ≤ h·w ≤ max_pixels` (Qwen2-VL's rule)."""
    h, w = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def video_patches(video: Tensor, *, size: tuple[int, int], patch: int = 14, temporal_patch: int = 2,
                  merge: int = 2) -> tuple[Tensor, Tensor]:
    """One clip `(C, T, H, W)` in [-1, 1] -> `pixel_values_videos (N, C·tp·p·p)` and `grid_thw (3,)`.

    `T` must be a multiple of `temporal_patch`; the frames are resized to `size`.
    Patches are ordered (t, h-block, w-block, h-in-merge, w-in-merge), the layout
    Qwen2-VL's vision tower and patch merger expect.
    """
    c, t, _, _ = video.shape
    x = F.interpolate(video.permute(1, 0, 2, 3).float(), size=size, mode="bicubic", align_corners=False)
    x = (x.clamp(-1, 1) + 1) / 2
    mean = x.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    x = (x - mean) / std  # (T, C, H, W)
    gt, gh, gw = t // temporal_patch, size[0] // patch, size[1] // patch
    x = x.reshape(gt, temporal_patch, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * temporal_patch * patch * patch), torch.tensor([gt, gh, gw])
