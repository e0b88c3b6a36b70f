"""LoRA policies: θ, θ_old, θ_ref share one base; only θ trains; publish soft-updates θ_old."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("diffusers")

from afd_async.models.wan.causal_student import WanCausalStudent  # noqa: E402
from afd_async.models.wan.config import TINY_WAN  # noqa: E402
from afd_async.checkpoint import CheckpointError  # noqa: E402
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
    per_adapter = sum(p.numel() for p in trainable)
    assert sum(p.numel() for p in m.parameters()) == n_base + 3 * per_adapter  # default, old, ema: no base copies
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
    assert any(".old." in k for k in state["lora"]) and all(".lora_" in k for k in state["lora"])
    published = old.state_dict()  # what the learner sends to actors: the old adapter only
    assert published and all(".old." in k for k in published)
    with torch.no_grad():
        for p in pol.adapter_params("old").values():
            p.zero_()
    pol.load_state_dict(state)
    torch.testing.assert_close(old(x, t, text, clean), theta(x, t, text, clean))
    # an actor's `old` view on its own copy of the base loads the published tensors strictly
    torch.manual_seed(0)
    m2 = WanCausalStudent(transformer=TINY_WAN, latent_height=4, latent_width=6, chunk_frames=2, max_frames=8)
    actor = LoraPolicies(m2, rank=4, alpha=8).old
    actor.load_state_dict(published)
    torch.testing.assert_close(actor(x, t, text, clean), old(x, t, text, clean))
    with pytest.raises(CheckpointError, match="missing key"):
        actor.load_state_dict(dict(list(published.items())[1:]))


def test_lora_ema_tracks_theta_adapters() -> None:
    torch.manual_seed(0)
    m = WanCausalStudent(transformer=TINY_WAN, latent_height=4, latent_width=6, chunk_frames=2, max_frames=8)
    pol = LoraPolicies(m, rank=4, alpha=8, eval_ema=0.75)
    d, e = pol.adapter_params("default"), pol.adapter_params("ema")
    name = next(k for k in d if "lora_B" in k)
    with torch.no_grad():
        d[name].fill_(1.0)
    pol.ema.update(m)
    ek = name.replace(".default.", ".ema.")
    # first update: the ramped decay min(0.75, (1 + 0) / (10 + 0)) = 0.1, so the EMA moves 90 % of the way
    torch.testing.assert_close(e[ek], torch.full_like(e[ek], 0.9))
    assert pol.ema.state_dict() == {"decay": 0.75, "updates": 1}
    assert all(".ema." in k for k in pol.ema.module.state_dict())


def test_full_policies_copy() -> None:
    m = WanCausalStudent(transformer=TINY_WAN, latent_height=4, latent_width=6, chunk_frames=2, max_frames=8)
    pol = FullPolicies(m)
    assert pol.view("old") is not m and pol.view("default") is m
    pol.publish(0.5)


def test_merged_old_equals_the_adapter_path_and_adapters_are_fp32() -> None:
    torch.manual_seed(0)
    m = WanCausalStudent(transformer=TINY_WAN, latent_height=4, latent_width=6, chunk_frames=2, max_frames=8)
    pol = LoraPolicies(m, rank=4, alpha=8)
    with torch.no_grad():
        for p in pol.adapter_params("default").values():
            p.normal_(std=0.3)
    pol.publish(0.3)  # rebuilds the merged copy from the soft-updated `old` adapter
    x, clean, t, text = torch.randn(1, 4, 4, 4, 6), torch.randn(1, 4, 4, 4, 6), torch.rand(1, 2), torch.randn(1, 3, 16)
    with pol.use("old"):
        via_adapters = m(x, t, text, clean)
    assert not torch.allclose(via_adapters, pol.ref(x, t, text, clean))
    torch.testing.assert_close(pol.old(x, t, text, clean), via_adapters, rtol=1e-4, atol=1e-5)
    kw = dict(timesteps=[1000, 500], shift=5.0, latent_frames=4)
    with pol.use("old"):
        roll = m.rollout(text, generator=torch.Generator().manual_seed(2), **kw)
    torch.testing.assert_close(pol.old.rollout(text, generator=torch.Generator().manual_seed(2), **kw), roll,
                               rtol=1e-4, atol=1e-4)
    bf = LoraPolicies(WanCausalStudent(transformer=TINY_WAN, latent_height=4, latent_width=6, chunk_frames=2,
                                       max_frames=8).to(torch.bfloat16), rank=4, alpha=8)
    assert {p.dtype for a in ("default", "old", "ema") for p in bf.adapter_params(a).values()} == {torch.float32}
    assert bf.merged_old is not None and next(bf.merged_old.parameters()).dtype == torch.bfloat16
