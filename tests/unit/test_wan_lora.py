"""LoRA policies: θ, θ_old, θ_ref share one base; only θ trains; publish soft-updates θ_old."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("diffusers")

from afd_async.models.wan.causal_student import WanCausalStudent  # noqa: E402
from afd_async.models.wan.config import TINY_WAN  # noqa: E402
from afd_async.models.wan.lora import FullPolicies, LoraPolicies  # noqa: E402


def test_lora_policies() -> None:
    torch.manual_seed(0)
    m = WanCausalStudent(transformer=TINY_WAN, latent_height=4, latent_width=6, chunk_frames=2, max_frames=8)
    n_base = sum(p.numel() for p in m.parameters())
    pol = LoraPolicies(m, rank=4, alpha=8)
    x, clean, t, text = torch.randn(1, 4, 4, 4, 6), torch.randn(1, 4, 4, 4, 6), torch.rand(1, 2), torch.randn(1, 3, 16)
    theta, old, ref = pol.view("default"), pol.view("old"), pol.view("ref")
    v0 = ref(x, t, text, clean)
    torch.testing.assert_close(theta(x, t, text, clean), v0)
    torch.testing.assert_close(old(x, t, text, clean), v0)
    trainable = pol.trainable_parameters()
    assert all(p.requires_grad for p in trainable)
    assert {id(p) for p in m.parameters() if p.requires_grad} == {id(p) for p in trainable}
    assert sum(p.numel() for p in m.parameters()) < 1.5 * n_base
    with torch.no_grad():
        for layer in pol.layers:
            layer.lora_B["default"].weight.normal_()
    v1 = theta(x, t, text, clean)
    assert not torch.allclose(v1, v0)
    torch.testing.assert_close(old(x, t, text, clean), v0)
    torch.testing.assert_close(ref(x, t, text, clean), v0)
    assert {id(p) for p in m.parameters() if p.requires_grad} == {id(p) for p in trainable}  # switches keep θ alone trainable
    m.gradient_checkpointing = True
    m.train()
    loss = (theta(x, t, text, clean) - old(x, t, text, clean).detach()).square().mean()
    loss.backward()
    assert trainable[1].grad is not None and trainable[1].grad.abs().sum() > 0
    pol.publish(0.0)
    torch.testing.assert_close(old(x, t, text, clean), theta(x, t, text, clean))
    state = pol.state_dict()
    assert any(".old." in k for k in state) and all(".lora_" in k for k in state)
    pol.load_state_dict(state)


def test_full_policies_copy() -> None:
    m = WanCausalStudent(transformer=TINY_WAN, latent_height=4, latent_width=6, chunk_frames=2, max_frames=8)
    pol = FullPolicies(m)
    assert pol.view("old") is not m and pol.view("default") is m
    pol.publish(0.5)
