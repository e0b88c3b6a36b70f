"""Algorithm schema (config group `algo`): AFD and its baselines (DESIGN.md §2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DNegativeKind = Literal["shuffled", "reversed", "frame_drop", "prompt_swap", "time_warp"]  # = algo.negatives.NegativeKind


@dataclass
class AlgoConfig:
    """Hyper-parameters of AFD and the baselines that run through the same system.

    `name` picks the student objective, one registered in `afd_async/train/objectives.py` (checked when the
    loop or a learner is built: this layer does not import the registry). The built-in ones:
      - `afd`: DiffusionNFT on the student's own noised rollout, weighted by D's advantage.
      - `sft`: off-policy flow matching on teacher clips (no D needed for the student).
      - `gan`: terminal adversarial reward without forward-process credit assignment.
      - `frozen_d`: AFD with lr_d = 0 after warm-up (reward hacking baseline).
      - `oracle`: AFD's update with the ground-truth physics score as the reward instead of D (the
        ceiling: what the student and optimiser reach with a perfect reward; embedded renderer teacher only).
    """

    name: str = "afd"  # a registered objective (train/objectives.py): afd, sft, gan, frozen_d, oracle, or one added
    beta: float = 0.1  # DiffusionNFT implicit-policy mixing β
    lam_ref: float = 1e-4  # λ, weight of ‖v_θ − v_ref‖²
    adv_clip: float = 5.0  # a: advantage clip; w = clip(0.5 + 0.5·clip(A,−a,a)/a, 0, 1)
    adv_eps: float = 1e-4  # A = (s − mean) / (std + eps)
    # K > 1 rollouts per prompt: `nft` = DiffusionNFT (per-prompt mean, std of the whole batch: D's preference
    # keeps its size); `group` = per-prompt mean and std (every advantage is ±1 at K = 2). Same at K = 1.
    adv_norm: Literal["nft", "group"] = "nft"
    lr_student: float = 1e-5  # student AdamW learning rate (tiny student: 1e-4 drifts off its own samples within 50 steps)
    lr_d: float = 5e-5  # discriminator AdamW learning rate (frozen_d: 0 after warm-up)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm for both models
    d_steps_per_student_step: int = 1  # critic ratio (DMD2-style)
    d_warmup_steps: int = 50  # D-only steps on (teacher, initial student) pairs
    eta_rate: float = 0.001  # old-policy EMA: η_step = min(eta_rate·step, eta_max)
    eta_max: float = 0.5
    eval_ema: float = 0.99  # eval EMA decay
    rollouts_per_prompt: int = 1  # K rollouts per prompt; K > 1 centres advantages per prompt (see adv_norm)
    t_sampling: Literal["schedule", "shifted_uniform"] = "shifted_uniform"  # per-chunk t for the NFT loss
    # D regularisers against saturation (off by default). Instance noise: std of Gaussian noise added to both
    # teacher and student clips ([-1, 1] video) in D's BT training step only, never when scoring advantages;
    # drawn from a per-step CPU generator (train.seed), so runs stay reproducible and the k=0 oracle holds.
    d_instance_noise: float = 0.0
    # Skip D's optimizer step (metrics still computed, the version still counts) when its accuracy on the
    # batch before the step is strictly above this; 1.0 = never skip (accuracy cannot exceed 1).
    d_max_accuracy: float = 1.0
    # R1 gradient penalty (Mescheder et al. 2018; off by default): L_D += d_r1_gamma / 2 · E‖∇_x D(x_teacher)‖² on
    # the teacher clips of D's BT step, so D cannot fit the pairs with a steep score surface around them (a saturated
    # D's advantages carry no signal). Single-process D only (DDP has no double backward).
    d_r1_gamma: float = 0.0
    # Teacher clips brought to their paired student clip's look in D's BT step (afd_async/algo/appearance.py; off by
    # default): blurred to its sharpness and given its per-channel mean and std, so D cannot separate the pair by
    # looks (issue 15: every D measured ranks student clips by sharpness and brightness, not physics). Student
    # clips, and the clips D scores for the advantage, are never changed. Deterministic: the k=0 oracle holds.
    d_match_appearance: bool = False
    # Temporal negatives (DESIGN.md §2.2, afd_async/algo/negatives.py; off by default): the batch's (noised) teacher
    # clips corrupted by each of d_negative_kinds are extra losers vs the real teacher clip in D's BT step,
    # L_D = L_BT(teacher, student) + d_negative_weight · mean_kind L_BT(teacher, corrupted teacher). Against a D
    # that scores motion energy, not physics and prompt. Drawn from a per-step CPU generator (train.seed), as
    # the instance noise is, so the k=0 oracle holds; prompt_swap rows that land on their own prompt text take a
    # prompt of an earlier batch. On by default (issue 15: with the shipped pretrained D it keeps every probe
    # >= 0.95 through training); the real-scale overlays turn it off (3 more VideoReward passes a D step, unmeasured).
    # A data-parallel D learner draws them per rank from its shard: not the single-process numbers, bit for bit.
    d_temporal_negatives: bool = True
    d_negative_kinds: tuple[DNegativeKind, ...] = (
        "shuffled", "reversed", "prompt_swap")  # which corruptions (shuffled/reversed/frame_drop/time_warp in time; prompt_swap)
    d_negative_weight: float = 1.0  # w, weight of the negatives' mean BT loss in L_D

    def __post_init__(self) -> None:
        if not 0 < self.beta <= 1:
            raise ValueError(f"beta must be in (0, 1], got {self.beta}")
        if self.adv_clip <= 0:
            raise ValueError(f"adv_clip must be > 0, got {self.adv_clip}")
        if self.lr_student < 0 or self.lr_d < 0:
            raise ValueError("learning rates must be >= 0")
        if self.d_steps_per_student_step < 0 or self.d_warmup_steps < 0:
            raise ValueError("d_steps_per_student_step and d_warmup_steps must be >= 0")
        if not 0 <= self.eta_max < 1 or not 0 <= self.eval_ema < 1:
            raise ValueError("eta_max and eval_ema must be in [0, 1)")
        if self.rollouts_per_prompt < 1:
            raise ValueError("rollouts_per_prompt must be >= 1")
        if not self.d_instance_noise >= 0:  # also refuses NaN
            raise ValueError(f"d_instance_noise is a std and must be >= 0, got {self.d_instance_noise}")
        if not self.d_r1_gamma >= 0:  # also refuses NaN
            raise ValueError(f"d_r1_gamma is a penalty weight and must be >= 0, got {self.d_r1_gamma}")
        if not 0 <= self.d_max_accuracy <= 1:
            raise ValueError(f"d_max_accuracy is an accuracy threshold in [0, 1] (1 = never skip), got {self.d_max_accuracy}")
        if not 0 <= self.d_negative_weight < float("inf"):  # also refuses NaN
            raise ValueError(f"d_negative_weight must be a finite weight >= 0, got {self.d_negative_weight}")
        if self.d_temporal_negatives and not self.d_negative_kinds:
            raise ValueError("d_temporal_negatives is on but d_negative_kinds is empty: name at least one corruption")
        if len(set(self.d_negative_kinds)) != len(self.d_negative_kinds):
            raise ValueError(f"d_negative_kinds lists a kind twice: {list(self.d_negative_kinds)}")

    @property
    def d_negatives(self) -> tuple[DNegativeKind, ...]:
        """The corruptions D's BT step adds as losers (empty when d_temporal_negatives is off)."""
        return tuple(self.d_negative_kinds) if self.d_temporal_negatives else ()
