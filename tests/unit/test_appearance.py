"""`match_appearance` takes looks out of D's (teacher, student) pairs and leaves their motion (issue 15)."""

from __future__ import annotations

import pytest
import torch

from afd_async.algo.appearance import gaussian_blur, match_appearance, sharpness


def disc_clip(b: int, *, radius: float, level: float, noise: float, seed: int) -> torch.Tensor:
    """`(b, 3, 8, 32, 32)` clips of a disc moving right on a dark background, with pixel noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    frames = [((xx - (8 + 2 * f)) ** 2 + (yy - 16) ** 2 <= radius ** 2).float() for f in range(8)]
    disc = torch.stack(frames).view(1, 1, 8, 32, 32).expand(b, 3, 8, 32, 32)
    return (-0.9 + (level + 0.9) * disc + noise * torch.randn(b, 3, 8, 32, 32, generator=g)).clamp(-1, 1)


def test_the_teacher_takes_the_students_channel_means_and_stds_and_keeps_its_motion() -> None:
    teacher = disc_clip(3, radius=5, level=1.0, noise=0.0, seed=0)  # crisp and bright, as the renderer draws
    student = disc_clip(3, radius=4, level=0.2, noise=0.05, seed=1)  # dimmer, noisier
    out = match_appearance(teacher, student)
    assert out.shape == teacher.shape
    torch.testing.assert_close(out.mean(dim=(2, 3, 4)), student.mean(dim=(2, 3, 4)), atol=2e-3, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3, 4)), student.std(dim=(2, 3, 4)), atol=5e-3, rtol=0)
    # the disc still moves where the teacher's did: the brightest column of each frame is unchanged
    assert torch.equal(out[0, 0].mean(dim=1).argmax(dim=1), teacher[0, 0].mean(dim=1).argmax(dim=1))


def test_a_sharper_teacher_is_blurred_towards_its_students_sharpness_and_never_sharpened() -> None:
    teacher = disc_clip(2, radius=5, level=1.0, noise=0.0, seed=0)
    soft = gaussian_blur(teacher, 1.5)
    assert sharpness(soft).mean() < sharpness(teacher).mean()
    out = match_appearance(teacher, soft)
    gap_before = (sharpness(teacher) - sharpness(soft)).abs()
    assert ((sharpness(out) - sharpness(soft)).abs() < 0.25 * gap_before).all()
    # a teacher already softer than its student is not blurred, and not sharpened either (the contrast stretch
    # and the clamp to [-1, 1] move its sharpness a little, nowhere near the sharp clip's)
    kept = match_appearance(soft, teacher)
    torch.testing.assert_close(sharpness(kept), sharpness(soft), atol=0, rtol=0.1)
    assert (sharpness(kept) < 0.5 * sharpness(teacher)).all()


def test_unpaired_clips_are_refused() -> None:
    with pytest.raises(ValueError, match="paired clips must match"):
        match_appearance(torch.zeros(2, 3, 8, 32, 32), torch.zeros(3, 3, 8, 32, 32))
