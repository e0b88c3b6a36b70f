"""The tiny discriminator sees motion and the prompt, and BT training separates pairs."""

from __future__ import annotations

import torch

from afd_async.algo.losses import bt_accuracy, bt_loss
from afd_async.models.tiny_discriminator import TinyVideoDiscriminator, frames_to_video, video_to_frames


def _moving_square_clips(n: int, g: torch.Generator, frames: int = 8, size: int = 16) -> torch.Tensor:
    """`(n, 3, F, H, W)` clips of a square moving right at a random row and speed."""
    out = -torch.ones(n, 3, frames, size, size)
    for i in range(n):
        row = int(torch.randint(0, size - 4, (1,), generator=g))
        x0 = int(torch.randint(0, 3, (1,), generator=g))
        for f in range(frames):
            x = min(x0 + f, size - 4)
            out[i, 0, f, row : row + 4, x : x + 4] = 1.0
    return out


def test_discriminator_learns_temporal_order_not_just_frames():
    """Teacher = ordered clips; student = the same frames shuffled in time.

    Every student frame is a valid teacher frame, so only a model that sees
    motion can rank them.
    """
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    d = TinyVideoDiscriminator(text_dim=8, channels=8, depth=2)
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    text = torch.zeros(16, 8)

    def batch():
        teacher = _moving_square_clips(16, g)
        perm = torch.stack([torch.randperm(8, generator=g) for _ in range(16)])
        student = torch.stack([teacher[i][:, perm[i]] for i in range(16)])
        return teacher, student

    for _ in range(60):
        t, s = batch()
        opt.zero_grad()
        bt_loss(d(t, text), d(s, text)).backward()
        opt.step()
    with torch.no_grad():
        t, s = batch()
        acc = bt_accuracy(d(t, text), d(s, text))
    assert acc >= 0.9, acc


def test_score_depends_on_prompt_once_trained():
    torch.manual_seed(0)
    d = TinyVideoDiscriminator(text_dim=4, channels=8, depth=2)
    with torch.no_grad():
        for p in d.parameters():
            p.add_(0.05 * torch.randn_like(p))
    v = torch.rand(2, 3, 4, 8, 8) * 2 - 1
    a = d(v, torch.tensor([[1.0, 0, 0, 0]] * 2))
    b = d(v, torch.tensor([[0, 1.0, 0, 0]] * 2))
    assert a.shape == (2,) and not torch.allclose(a, b)


def test_frames_video_round_trip():
    frames = torch.randint(0, 256, (2, 5, 6, 7, 3), dtype=torch.uint8)
    video = frames_to_video(frames)
    assert video.shape == (2, 3, 5, 6, 7) and video.min() >= -1 and video.max() <= 1
    assert torch.equal(video_to_frames(video), frames)


def test_temporal_head_learns_which_direction_the_prompt_asks_for():
    """Prompt "right" or "left" (one-hot); the teacher clip moves that way, the loser is the same clip
    played backwards. Every frame and every |frame difference| is shared by winner and loser, and a
    clip moving right wins for one prompt and loses for the other: D must read the order and the prompt."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    d = TinyVideoDiscriminator(text_dim=2, channels=8, depth=2, temporal_head=True)
    assert d.config["temporal_head"] is True
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)

    def batch():
        right = _moving_square_clips(16, g)
        left = right.flip(dims=(4,))  # mirror image: moving left
        go_left = torch.rand(16, generator=g) < 0.5
        teacher = torch.where(go_left[:, None, None, None, None], left, right)
        text = torch.stack([(~go_left).float(), go_left.float()], dim=1)
        return teacher, teacher.flip(dims=(2,)), text

    for _ in range(80):
        t, s, text = batch()
        opt.zero_grad()
        bt_loss(d(t, text), d(s, text)).backward()
        opt.step()
    with torch.no_grad():
        t, s, text = batch()
        acc = bt_accuracy(d(t, text), d(s, text))
    assert acc >= 0.9, acc


def test_original_head_keeps_its_saved_config():
    d = TinyVideoDiscriminator(text_dim=4, channels=8, depth=2)
    assert "temporal_head" not in d.config and not hasattr(d, "time_conv1")
    rebuilt = TinyVideoDiscriminator.from_config(d.config)
    rebuilt.load_state_dict(d.state_dict())  # checkpoints written before the option still load


def test_word_tokens_are_read_as_their_mean():
    from afd_async.models.text_encoder import pool_words

    torch.manual_seed(0)
    d = TinyVideoDiscriminator(text_dim=8, channels=8, depth=2).eval()
    video = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    words = torch.cat([torch.randn(2, 3, 8), torch.zeros(2, 2, 8)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(d(video, words), d(video, words[:, :3].mean(1)))
    pooled, mask = pool_words(torch.zeros(1, 4, 8))  # a prompt of no words: one zero token, no NaN
    assert mask.tolist() == [[True, False, False, False]] and torch.equal(pooled, torch.zeros(1, 8))
