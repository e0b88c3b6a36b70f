"""Causal Wan student at a tiny config: KV-cache rollout equals full recompute; teacher forcing is causal."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from afd_async.models.wan.causal_student import WanCausalStudent  # noqa: E402
from afd_async.models.wan.config import TINY_WAN  # noqa: E402


def _student(**kw) -> WanCausalStudent:
    torch.manual_seed(0)
    m = WanCausalStudent(transformer=TINY_WAN, latent_height=4, latent_width=6, chunk_frames=2, max_frames=12, **kw)
    with torch.no_grad():  # diffusers zero-inits nothing that matters here; make the output depend on everything
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


@pytest.mark.parametrize("window", [None, 4, 5])
def test_cache_rollout_equals_recompute(window) -> None:
    m = _student(kv_cache_frames=window)
    text = torch.randn(2, 5, TINY_WAN["text_dim"])
    kw = dict(timesteps=[1000, 750, 500, 250], shift=5.0, latent_frames=8)
    a = m.rollout(text, generator=torch.Generator().manual_seed(1), use_cache=True, **kw)
    b = m.rollout(text, generator=torch.Generator().manual_seed(1), use_cache=False, **kw)
    assert a.shape == (2, 4, 8, 4, 6)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_window_changes_long_rollout() -> None:
    text = torch.randn(1, 5, TINY_WAN["text_dim"])
    kw = dict(timesteps=[1000, 500], shift=5.0, latent_frames=8)
    a = _student(kv_cache_frames=None).rollout(text, generator=torch.Generator().manual_seed(1), **kw)
    b = _student(kv_cache_frames=4).rollout(text, generator=torch.Generator().manual_seed(1), **kw)
    torch.testing.assert_close(a[:, :, :4], b[:, :, :4])  # within the window: identical
    assert not torch.allclose(a[:, :, 6:], b[:, :, 6:])  # chunk 3 no longer sees chunk 0


def test_teacher_forcing_is_block_causal_and_backprops() -> None:
    m = _student().train()
    x_t, clean = torch.randn(2, 4, 6, 4, 6), torch.randn(2, 4, 6, 4, 6)
    t, text = torch.rand(2, 3), torch.randn(2, 5, TINY_WAN["text_dim"])
    v = m(x_t, t, text, clean)
    assert v.shape == x_t.shape
    clean2, x2 = clean.clone(), x_t.clone()
    clean2[:, :, 4:] += 1.0  # the last chunk's clean frames are nobody's context
    x2[:, :, 2:4] += 1.0  # chunk 1's noisy input must not reach chunks 0 or 2
    v2 = m(x2, t, text, clean2)
    torch.testing.assert_close(v[:, :, :2], v2[:, :, :2])
    torch.testing.assert_close(v[:, :, 4:], v2[:, :, 4:])
    m.gradient_checkpointing = True
    m(x_t, t, text, clean).square().mean().backward()
    assert m.transformer.blocks[0].attn1.to_q.weight.grad is not None


def test_forward_rejects_bad_shapes() -> None:
    m = _student()
    with pytest.raises(ValueError, match="does not fit"):
        m(torch.randn(1, 4, 5, 4, 6), torch.rand(1, 2), torch.randn(1, 5, 16), torch.randn(1, 4, 5, 4, 6))


def test_config_selects_wan_student(tmp_path) -> None:
    from afd_async.config.convert import ConfigError, from_dict
    from afd_async.config.student import StudentConfig
    from afd_async.models.factory import wan_student_kwargs

    cfg = from_dict(StudentConfig, dict(kind="wan", height=480, width=832, num_frames=81, fps=16.0, chunk_frames=3,
                                        shift=5.0, wan=dict(lora_rank=64, kv_cache_frames=21)))
    kw = wan_student_kwargs(cfg)
    assert (kw["latent_height"], kw["latent_width"], kw["kv_cache_frames"]) == (60, 104, 21)
    with pytest.raises(ConfigError, match="4k\\+1 frames"):
        from_dict(StudentConfig, dict(kind="wan", num_frames=80, height=480, width=832))
    with pytest.raises(ConfigError, match="did you mean 'lora_rank'"):
        from_dict(StudentConfig, dict(kind="wan", num_frames=81, height=480, width=832, chunk_frames=3, wan=dict(lora_rnk=2)))
