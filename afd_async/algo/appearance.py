"""Teacher clips brought to their paired student clip's look, so that D must tell them apart by motion (issue 15).

Every D measured ranks fresh student rollouts by how sharp (ρ ≈ +0.6) and bright (ρ ≈ +0.6) they are, and
hardly by their physics error (+0.14; BENCHMARKS.md "What D follows instead"): the rendered teacher clips are
sharper and brighter than the student's, which separates the pair at no cost, and the advantage then rewards
looks. `match_appearance` takes those cues out of the (teacher, student) pair D trains on: each teacher clip is
blurred to its student clip's sharpness (relative to contrast) and given its per-channel mean and std. What is
left to separate them is what the pixels do over time and where the objects are. Student clips, and the clips
D scores for the advantage, are never changed. The idea is GAN augmentation's (e.g. DiffAugment), made
asymmetric: the point is to remove a gap, not to regularise.

Shapes: `(B, C, F, H, W)` in [-1, 1].
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

SIGMAS: tuple[float, ...] = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # the blurs a teacher clip may get, in pixels


def sharpness(video: torch.Tensor) -> torch.Tensor:
    """`(B,)` mean squared spatial gradient over the clip's variance: edge energy per unit of contrast, so that
    a contrast change alone does not move it. (Squared: the mean |gradient| of a step edge is the same however
    blurred it is; its energy falls as 1/σ.)"""
    v = video.float()
    dx = (v[..., :, 1:] - v[..., :, :-1]).pow(2).mean(dim=(1, 2, 3, 4))
    dy = (v[..., 1:, :] - v[..., :-1, :]).pow(2).mean(dim=(1, 2, 3, 4))
    return (dx + dy) / v.flatten(1).var(dim=1).clamp_min(1e-8)


def gaussian_blur(video: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each frame blurred by a separable Gaussian of `sigma` pixels (reflect padding); 0 returns the clip."""
    if sigma <= 0:
        return video
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=video.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).to(video.dtype)
    b, c, f, h, w = video.shape
    frames = video.permute(0, 2, 1, 3, 4).reshape(b * f * c, 1, h, w)
    frames = F.conv2d(F.pad(frames, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    frames = F.conv2d(F.pad(frames, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
    return frames.view(b, f, c, h, w).permute(0, 2, 1, 3, 4)


def match_appearance(teacher: torch.Tensor, student: torch.Tensor, sigmas: Sequence[float] = SIGMAS) -> torch.Tensor:
    """Each teacher clip blurred to its student clip's sharpness (the nearest of `sigmas`, never sharper than
    it was) and then given the student clip's per-channel mean and std, clamped to [-1, 1].

    A teacher clip already less sharp than its student clip is left unblurred. No gradient flows to `student`.
    """
    if teacher.shape != student.shape:
        raise ValueError(f"paired clips must match: {tuple(teacher.shape)} vs {tuple(student.shape)}")
    student = student.detach()
    with torch.no_grad():
        target = sharpness(student)
        blurred = [gaussian_blur(teacher, s) for s in sigmas]
        gaps = torch.stack([(sharpness(v) - target).abs() for v in blurred])  # (S, B)
        pick = gaps.argmin(dim=0)
    out = torch.stack([blurred[int(i)][b] for b, i in enumerate(pick)])
    dims = (2, 3, 4)
    t_mean, t_std = out.mean(dim=dims, keepdim=True), out.std(dim=dims, keepdim=True).clamp_min(1e-4)
    s_mean, s_std = student.mean(dim=dims, keepdim=True), student.std(dim=dims, keepdim=True)
    return ((out - t_mean) / t_std * s_std + s_mean).clamp(-1.0, 1.0)
