"""Run schema (root key `train`): steps, batch, seed, device, output folder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TrainConfig:
    """What every loop (sync, pretrain, async learners) needs to know about the run."""

    steps: int = 200  # student learner steps
    batch_size: int = 8  # prompts per batch
    seed: int = 0
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16"] = "float32"
    output_dir: str = "outputs/run"
    log_every: int = 10
    eval_every: int = 50  # steps between physics evaluations on eval prompts (0: only at start/end)
    eval_prompts: int = 16  # eval prompts used by the evaluator
    torch_threads: int = 0  # 0: leave torch's default
    sync_teacher_codec: bool = False  # afd sync: pass teacher clips through the local server's MP4 encode/decode,
    # so its clips are bit-identical to what afd run's teacher actors cache (the staleness-0 oracle comparison)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be >= 0 and batch_size >= 1")
