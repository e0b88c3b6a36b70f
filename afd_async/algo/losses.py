"""AFD losses, written to read like DESIGN.md §2 (arXiv 2605.26105, built on DiffusionNFT).

Shapes: videos/latents are `(B, C, F, H, W)`; `t` is per chunk, `(B, n_chunks)`,
broadcast to frames with `expand_chunk_t`. Rectified flow throughout:
`x_t = (1 − t)·x0 + t·ε`, velocity `v = ε − x0`, so `x0 = x_t − t·v`.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- §2.2 discriminator


def bt_loss(score_teacher: torch.Tensor, score_student: torch.Tensor) -> torch.Tensor:
    """Prompt-paired Bradley–Terry loss, L_D = mean_c −log σ(D(x^T_c, c) − D(ŷ_c, c)).

    Both inputs are `(B,)` scores of the same prompts in the same order.
    `softplus(−z) = −log σ(z)`, computed stably.
    """
    if score_teacher.shape != score_student.shape:
        raise ValueError(f"paired scores must match: {tuple(score_teacher.shape)} vs {tuple(score_student.shape)}")
    return F.softplus(score_student - score_teacher).mean()


def bt_accuracy(score_teacher: torch.Tensor, score_student: torch.Tensor) -> float:
    """Fraction of pairs where D ranks the teacher clip above the student's (chance = 0.5)."""
    return (score_teacher > score_student).float().mean().item()


# ---------------------------------------------------------------- §2.3 advantage


AdvNorm = Literal["nft", "group"]


def advantages(
    scores: torch.Tensor,
    *,
    group_ids: Optional[torch.Tensor] = None,
    eps: float = 1e-4,
    norm: AdvNorm = "nft",
) -> torch.Tensor:
    """§2.3 advantages A_c from D's scores of the student clips.

    `norm="nft"` (DiffusionNFT): A_c = (s_c − mean of c's prompt group) / (std of the whole batch + eps).
    The global std keeps the size of D's preference: two rollouts of one prompt that D
    barely tells apart get advantages near 0, not ±1.
    `norm="group"`: mean and std both per prompt group (GRPO style); with K = 2 rollouts
    every advantage is ±1 whatever D says, kept as an option for comparison.
    Without groups (K = 1: `group_ids` None) both are (s − batch mean) / (batch std + eps).

    Args:
        scores: `(B,)` discriminator scores of the student clips (no grad needed).
        group_ids: `(B,)` integer prompt ids when some prompt has K > 1 rollouts, else None.
    """
    s = scores.detach().float()
    if group_ids is None:
        std = s.std(unbiased=False) if s.numel() > 1 else s.new_zeros(())
        return (s - s.mean()) / (std + eps)
    if norm not in ("nft", "group"):
        raise ValueError(f"unknown advantage normaliser {norm!r}; expected 'nft' or 'group'")
    centred = torch.empty_like(s)
    group_std = torch.empty_like(s)
    for g in torch.unique(group_ids):
        m = group_ids == g
        sg = s[m]
        centred[m] = sg - sg.mean()
        group_std[m] = sg.std(unbiased=False) if sg.numel() > 1 else sg.new_zeros(())
    if norm == "group":
        return centred / (group_std + eps)
    return centred / (s.std(unbiased=False) + eps)


def advantage_weight(adv: torch.Tensor, clip: float = 5.0) -> torch.Tensor:
    """w = clip(0.5 + 0.5·clip(A, −a, a)/a, 0, 1): 0.5 at zero advantage, monotone in A."""
    return (0.5 + 0.5 * adv.clamp(-clip, clip) / clip).clamp(0.0, 1.0)


# ---------------------------------------------------------------- §2.4 student (DiffusionNFT)


def expand_chunk_t(t: torch.Tensor, num_frames: int) -> torch.Tensor:
    """`(B, n_chunks)` -> `(B, 1, F, 1, 1)`, each chunk's t repeated over its frames."""
    b, n = t.shape
    if num_frames % n:
        raise ValueError(f"{num_frames} frames do not split into {n} chunks")
    return t.repeat_interleave(num_frames // n, dim=1).view(b, 1, num_frames, 1, 1)


def noise_to(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Forward process x_t = (1 − t)·x0 + t·ε with per-chunk t `(B, n_chunks)`."""
    tt = expand_chunk_t(t, x0.shape[2]).to(x0.dtype)
    return (1 - tt) * x0 + tt * eps


def adaptive_x0_error(x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """ℓ(u) = ‖x0_u − x̂0‖² / sg(mean|x0_u − x̂0|), x0_u = x_t − t·u, per sample and chunk.

    DiffusionNFT normalises per sample; with per-chunk noise levels we normalise
    per (sample, chunk) so that low-noise chunks are not drowned out by
    high-noise ones. Returns `(B, n_chunks)`.
    """
    b, c, f, h, w = x0.shape
    n = t.shape[1]
    x0_u = x_t - expand_chunk_t(t, f).to(v.dtype) * v
    err = (x0_u - x0).float().view(b, c, n, f // n, h, w)
    scale = err.detach().abs().mean(dim=(1, 3, 4, 5)).clamp_min(1e-5)
    return err.pow(2).mean(dim=(1, 3, 4, 5)) / scale


def nft_loss(
    *,
    x_t: torch.Tensor,
    t: torch.Tensor,
    x0: torch.Tensor,
    v_theta: torch.Tensor,
    v_old: torch.Tensor,
    weight: torch.Tensor,
    beta: float,
    adv_clip: float,
) -> torch.Tensor:
    """L_NFT = (a/β)·mean[w·ℓ(v⁺) + (1 − w)·ℓ(v⁻)] with the implicit policies

    v⁺ = (1 − β)·v_old + β·v_θ,   v⁻ = (1 + β)·v_old − β·v_θ.

    With w = 1 the minimum pulls v_θ towards the sample's velocity (ε − x̂0);
    with w = 0 it pushes it away, by the mirror image through v_old.

    Args:
        weight: `(B,)` advantage weights w ∈ [0, 1].
    """
    v_old = v_old.detach()
    v_pos = (1 - beta) * v_old + beta * v_theta
    v_neg = (1 + beta) * v_old - beta * v_theta
    w = weight.detach().float().view(-1, 1)
    per_chunk = w * adaptive_x0_error(x_t, t, v_pos, x0) + (1 - w) * adaptive_x0_error(x_t, t, v_neg, x0)
    return (adv_clip / beta) * per_chunk.mean()


def ref_regulariser(v_theta: torch.Tensor, v_ref: torch.Tensor) -> torch.Tensor:
    """‖v_θ − v_ref‖² (mean over elements); zero when θ = θ_ref."""
    return (v_theta - v_ref.detach()).float().pow(2).mean()


# ---------------------------------------------------------------- baselines


def flow_matching_loss(v_theta: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """`sft` and pretraining: ‖v_θ − (ε − x0)‖² on (teacher or data) clips."""
    return (v_theta.float() - (eps - x0).float()).pow(2).mean()


def x0_matching_loss(v_theta: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Pretraining's `loss=x0`: ‖t·(v_θ − (ε − x0))‖², the error of the clean-clip prediction x_t − t·v_θ.

    The v loss is this divided by t², so it spends its gradient on the nearly clean levels where there is
    little left to learn; weighted by t² every level counts alike, the high-noise ones included, where a
    rollout decides what to draw. `t`: `(B, n_chunks)`, each chunk's level over its frames (dim 2 of x0).
    """
    return ((v_theta.float() - (eps - x0).float()) * expand_chunk_t(t.float(), x0.shape[2])).pow(2).mean()


def gan_generator_loss(score_fake: torch.Tensor, score_teacher: torch.Tensor) -> torch.Tensor:
    """`gan` baseline: the generator's side of the paired BT game, −log σ(D(G) − D(x^T)).

    The gradient reaches the student only through D and the student's *terminal*
    x0 prediction (one denoising step at the last schedule level), so there is no
    credit assignment along the forward process, unlike NFT.
    """
    return F.softplus(score_teacher.detach() - score_fake).mean()
