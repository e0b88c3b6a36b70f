"""Pretraining schema (root key `pretrain`): the tiny student's deliberately imperfect start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from afd_async.config.algo import DNegativeKind


@dataclass
class PretrainConfig:
    """Flow matching on renderer clips with *weakened, varied* physics.

    Each training clip is rendered with gravity, restitution, friction and speed
    scaled by factors drawn uniformly from the ranges below (seeded per clip).
    The pretrained student therefore moves plausibly but, on average, too
    slowly, bounces too softly and stops too soon; its rollouts still cover
    some near-correct motion, which AFD can then select and sharpen.
    """

    # The defaults are the recipe of the shipped student (afd_async/assets, issue 15): 6000 steps x 32 on 10,000
    # grammar scenes with the x0 loss, the prompt on the token path and the bag-of-words text (~5 min on an H100,
    # 20 steps/s; on 2 CPU cores ~0.8 s a step: pass pretrain.steps for a shorter run).
    steps: int = 6000
    batch_size: int = 32
    lr: float = 3e-4
    warmup_steps: int = 100
    seeds_per_prompt: int = 1  # distinct physics draws per train prompt
    # null: the shipped train split (200 prompts). N: N scenes drawn from the grammar with the eval split's scenes
    # held out (afd_async.physics.suite.generate_training_prompts), so every word is seen in many combinations.
    # Memory: N x seeds_per_prompt clips of 49 KB each (uint8, 16 x 32 x 32 x 3), rendered once before step 0.
    num_prompts: Optional[int] = 10000
    # v: ‖v_θ − (ε − x0)‖² (flow matching); x0: the same times t², the error of the clean prediction, so the
    # high-noise levels where a rollout decides what to draw weigh as much as the nearly clean ones (issue 15)
    loss: Literal["v", "x0"] = "x0"
    render_workers: int = 0  # processes that render the set before step 0 (0: every core)
    gravity_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    restitution_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    friction_scale: list[float] = field(default_factory=lambda: [1.0, 2.5])
    speed_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    output: str = "outputs/pretrain/tiny_student.safetensors"
    # Start from this student checkpoint (the `pretrained` alias or a path) instead of a fresh init: a fine-tune,
    # e.g. the supervised ceiling of issue 15 (the shipped base trained on the *true* physics, all scales [1, 1]).
    init: Optional[str] = None
    log_every: int = 50

    def __post_init__(self) -> None:
        for name in ("gravity_scale", "restitution_scale", "friction_scale", "speed_scale"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0 <= lo_hi[0] <= lo_hi[1]:
                raise ValueError(f"{name} must be [low, high] with 0 <= low <= high, got {lo_hi}")
        if self.steps < 0 or self.batch_size < 1 or self.seeds_per_prompt < 1:
            raise ValueError("steps >= 0, batch_size >= 1, seeds_per_prompt >= 1")
        if self.num_prompts is not None and self.num_prompts < 1:
            raise ValueError(f"num_prompts must be >= 1 or null (the shipped train split), got {self.num_prompts}")
        if self.render_workers < 0:
            raise ValueError(f"render_workers must be >= 0 (0: every core), got {self.render_workers}")


@dataclass
class DPretrainConfig:
    """Pretraining the tiny discriminator (`afd pretrain-d`, root key `pretrain_d`): a critic of event order and prompt.

    D learns to rank each clip of the student's pretraining corpus (`pretrain`'s prompts and weakened physics,
    rendered the same way) above its own corruptions: frames shuffled, reversed, dropped and repeated, and the
    clip scored for another prompt. It never sees the teacher's physics (the corpus is weakened), so it knows
    what any video and prompt must agree on, not what the teacher does: the role VideoReward's pretraining has
    for AFD's D at real scale. Architecture: the `discriminator` block (channels, depth, temporal_head).
    """

    # The shipped D (afd_async/assets/tiny_discriminator_pretrained.safetensors): these defaults on a 2,000-prompt
    # corpus, `afd pretrain-d pretrain.num_prompts=2000` (17.5 min on a 2-core box shared with another job).
    steps: int = 800
    batch_size: int = 16  # distinct prompts a step (a prompt swap needs two)
    lr: float = 2e-4
    warmup_steps: int = 50
    kinds: tuple[DNegativeKind, ...] = ("shuffled", "reversed", "frame_drop", "prompt_swap")
    probe_every: int = 250  # steps between probes on held-out eval-split clips (0: only at the end)
    probe_clips: int = 40  # eval-split prompts the probes render (true physics: clips D never trained on)
    output: str = "outputs/pretrain/tiny_discriminator.safetensors"
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 2 or self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError("pretrain_d needs steps >= 0, batch_size >= 2 (a prompt swap needs two prompts), lr > 0, "
                             "warmup_steps >= 0")
        if not self.kinds or len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"pretrain_d.kinds must name each corruption once, at least one: {list(self.kinds)}")
        if self.probe_every < 0 or self.probe_clips < 2 or self.log_every < 1:
            raise ValueError("pretrain_d needs probe_every >= 0, probe_clips >= 2 and log_every >= 1")
