"""A student step on a batch: the objective's rewards, the NFT update, the θ_old soft update — shared by both modes.

    scores = rewards(batch, D's scores);  θ ← step(batch, scores);  θ_old ← η·θ_old + (1 − η)·θ;  version += 1

`afd sync` (`sync_loop.py`) and the student learner role (`runtime/student_learner.py`) both call
`student_step`, so they run one implementation of "the student on a batch". The caller supplies D's scores
(`d_score`: the sync loop's own D, or the learner's local copy of the published D) and keeps what is its own:
waiting for D weights, sending θ_old to the actors, the status hash.
"""

from __future__ import annotations

from typing import Optional

import torch

from afd_async.train.batch import PairBatch
from afd_async.train.objectives import DScore, Rewards
from afd_async.train.seeding import step_generator
from afd_async.train.student_update import StudentUpdater


def student_step(updater: StudentUpdater, batch: PairBatch, *, rewards: Rewards, d_score: DScore,
                 d: Optional[torch.nn.Module], run_seed: int, step: int) -> dict[str, float]:
    """One student step on `batch` (noise seeded by `(run_seed, step)`), then θ_old's soft update; the metrics
    carry the new `policy_version`. `d` is the differentiable D (the GAN loss) and D's scores come lazily from
    `d_score`, so objectives without D rewards never score; the rewards are formed when the loss asks, after its
    forward passes (`StudentUpdater.nft`), so a learner whose `d_score` first waits for D overlaps the two."""
    metrics = updater.step(batch, scores=lambda: rewards(batch, d_score), d=d,
                           generator=step_generator(run_seed, step, "train"))
    metrics["policy_version"] = float(updater.publish())
    return metrics
