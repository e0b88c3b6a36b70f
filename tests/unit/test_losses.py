"""The AFD losses behave as the paper's equations say (DESIGN.md §2)."""

from __future__ import annotations

import pytest
import torch

from afd_async.algo.losses import (
    adaptive_x0_error,
    advantage_weight,
    advantages,
    bt_accuracy,
    bt_loss,
    expand_chunk_t,
    flow_matching_loss,
    gan_generator_loss,
    nft_loss,
    noise_to,
    ref_regulariser,
    x0_matching_loss,
)


def test_bt_gradient_raises_teacher_and_lowers_student():
    s_t = torch.tensor([0.3, -1.0, 2.0], requires_grad=True)
    s_s = torch.tensor([0.5, -2.0, 2.5], requires_grad=True)
    bt_loss(s_t, s_s).backward()
    assert (s_t.grad < 0).all(), "descending L_D must raise D(teacher)"
    assert (s_s.grad > 0).all(), "descending L_D must lower D(student)"
    # the loss is the paired logistic loss: log 2 when scores tie
    assert bt_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_bt_rejects_unpaired_batches():
    with pytest.raises(ValueError, match="paired"):
        bt_loss(torch.zeros(3), torch.zeros(4))


def test_bt_accuracy_counts_teacher_above_student():
    assert bt_accuracy(torch.tensor([1.0, 0.0, 3.0, -1.0]), torch.tensor([0.0, 1.0, 2.0, -2.0])) == 0.75


def test_advantages_are_standardised_over_the_batch_without_groups():
    s = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    a = advantages(s)
    assert a.mean().abs() < 1e-5 and (a.std(unbiased=False) - 1).abs() < 1e-3
    # K = 1: the normalisers agree (there is nothing per prompt to centre on)
    assert torch.equal(advantages(s, norm="group"), a)


def test_nft_advantages_match_a_hand_computed_diffusionnft_example():
    # two prompts, K = 2: D barely separates prompt 0's rollouts (1.0 vs 1.2), clearly prompt 1's (0 vs 4)
    s = torch.tensor([1.0, 1.2, 0.0, 4.0])
    g = torch.tensor([0, 0, 1, 1])
    # per-prompt means 1.1 and 2.0; centred [-0.1, 0.1, -2, 2]; batch std = sqrt(mean((s - 1.55)^2))
    std = ((torch.tensor([1.0, 1.2, 0.0, 4.0]) - 1.55) ** 2).mean().sqrt().item()  # sqrt(8.83 / 4) = 1.48577
    expected = torch.tensor([-0.1, 0.1, -2.0, 2.0]) / (std + 1e-4)
    assert std == pytest.approx(1.48577, abs=1e-4)
    assert torch.allclose(advantages(s, group_ids=g, norm="nft"), expected, atol=1e-6)
    # the size of D's preference survives: prompt 0's advantages are 20x smaller than prompt 1's
    a = advantages(s, group_ids=g)
    assert a[1] / a[3] == pytest.approx(0.05, rel=1e-4)


def test_group_advantages_are_plus_minus_one_at_k2_whatever_d_says():
    s = torch.tensor([1.0, 1.2, 0.0, 4.0])
    g = torch.tensor([0, 0, 1, 1])
    ag = advantages(s, group_ids=g, norm="group")
    assert torch.allclose(ag, torch.tensor([-1.0, 1.0, -1.0, 1.0]), atol=1e-3)
    with pytest.raises(ValueError, match="normaliser"):
        advantages(s, group_ids=g, norm="perprompt")  # type: ignore[arg-type]


def test_advantage_weight_is_half_at_zero_and_monotone():
    a = torch.linspace(-20, 20, 401)
    w = advantage_weight(a, clip=5.0)
    assert advantage_weight(torch.zeros(1)).item() == 0.5
    assert (w.diff() >= 0).all() and w.min() == 0.0 and w.max() == 1.0
    assert advantage_weight(torch.tensor([2.5]), clip=5.0).item() == pytest.approx(0.75)


def _nft_setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, 2, 4, 1, 1, generator=g)
    eps = torch.randn(1, 2, 4, 1, 1, generator=g)
    t = torch.tensor([[0.3, 0.8]])
    x_t = noise_to(x0, t, eps)
    v_old = torch.randn(1, 2, 4, 1, 1, generator=g)
    return x0, eps, t, x_t, v_old


@pytest.mark.parametrize("w", [1.0, 0.0])
def test_nft_optimum_moves_towards_sample_velocity_iff_positive(w):
    x0, eps, t, x_t, v_old = _nft_setup()
    v_star = eps - x0  # the sample's own velocity
    beta = 0.1
    v = torch.nn.Parameter(v_old.clone())
    opt = torch.optim.Adam([v], lr=0.5)  # v_θ must travel ~|v* − v_old|/β
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.99)
    for _ in range(600):
        opt.zero_grad()
        nft_loss(x_t=x_t, t=t, x0=x0, v_theta=v, v_old=v_old, weight=torch.tensor([w]), beta=beta, adv_clip=5.0).backward()
        opt.step()
        sched.step()
    step = (v.detach() - v_old).flatten()
    towards = (v_star - v_old).flatten()
    cos = torch.nn.functional.cosine_similarity(step, towards, dim=0).item()
    if w == 1.0:
        # positive sample: v_θ moves towards the sample's velocity, and the implicit v⁺ reaches it
        assert cos > 0.99, cos
        v_pos = (1 - beta) * v_old + beta * v.detach()
        assert (v_pos - v_star).norm() < 0.05 * (v_old - v_star).norm()
    else:
        # negative sample: v_θ moves away (mirror through v_old), the implicit v⁻ reaches it
        assert cos < -0.99, cos
        v_neg = (1 + beta) * v_old - beta * v.detach()
        assert (v_neg - v_star).norm() < 0.05 * (v_old - v_star).norm()


def test_nft_half_weight_has_no_gradient_at_old_policy():
    # w = 0.5 and v_θ = v_old: the positive and negative terms cancel to first order.
    x0, eps, t, x_t, v_old = _nft_setup(1)
    v = v_old.clone().requires_grad_(True)
    nft_loss(x_t=x_t, t=t, x0=x0, v_theta=v, v_old=v_old, weight=torch.tensor([0.5]), beta=0.1, adv_clip=5.0).backward()
    assert v.grad.abs().max() < 1e-5


def test_adaptive_error_is_zero_for_exact_velocity_and_per_chunk():
    x0, eps, t, x_t, _ = _nft_setup(2)
    err = adaptive_x0_error(x_t, t, eps - x0, x0)
    assert err.shape == (1, 2) and err.abs().max() < 1e-6
    wrong = adaptive_x0_error(x_t, t, eps - x0 + 1.0, x0)
    assert (wrong > 0.1).all()


def test_ref_regulariser_zero_at_reference():
    v = torch.randn(2, 3, 4, 2, 2)
    assert ref_regulariser(v, v.clone()).item() == 0.0
    assert ref_regulariser(v + 0.1, v).item() == pytest.approx(0.01, rel=1e-4)


def test_expand_chunk_t_and_noise_endpoints():
    t = torch.tensor([[0.0, 1.0]])
    assert expand_chunk_t(t, 4).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    x0 = torch.ones(1, 1, 4, 1, 1)
    eps = -torch.ones(1, 1, 4, 1, 1)
    assert noise_to(x0, t, eps).flatten().tolist() == [1.0, 1.0, -1.0, -1.0]
    with pytest.raises(ValueError):
        expand_chunk_t(torch.zeros(1, 3), 4)


def test_flow_matching_zero_at_true_velocity():
    x0, eps = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    assert flow_matching_loss(eps - x0, x0, eps).item() == 0.0


def test_x0_loss_is_the_clean_prediction_error_and_v_loss_times_t_squared():
    g = torch.Generator().manual_seed(0)
    x0, eps, x0_hat = (torch.randn(2, 3, 4, 2, 2, generator=g) for _ in range(3))
    t = torch.tensor([[0.2, 0.9], [0.5, 1.0]])
    x_t = noise_to(x0, t, eps)
    v = (x_t - x0_hat) / expand_chunk_t(t, 4)  # the velocity of a student whose clean prediction is x0_hat
    assert x0_matching_loss(v, x0, eps, t).item() == pytest.approx((x0_hat - x0).pow(2).mean().item(), rel=1e-5)
    # one chunk alone: the v loss divided by t^2
    one = t[:, :1].clone().fill_(0.5)
    v1 = v[:, :, :2]
    assert x0_matching_loss(v1, x0[:, :, :2], eps[:, :, :2], one).item() == pytest.approx(
        0.25 * flow_matching_loss(v1, x0[:, :, :2], eps[:, :, :2]).item(), rel=1e-6)


def test_gan_generator_loss_pushes_fake_score_up():
    fake = torch.tensor([0.0, 1.0], requires_grad=True)
    gan_generator_loss(fake, torch.tensor([1.0, 1.0])).backward()
    assert (fake.grad < 0).all()
