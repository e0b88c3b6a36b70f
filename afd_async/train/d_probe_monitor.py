"""The D probes during training: a fixed held-out probe set, probed every `train.d_probe_every` D step calls.

    probes = make_probe_monitor(cfg, text.encode, device, sink=...)   # None when train.d_probe_every = 0
    for each D step call:  updater.step(batch); probes.after_step(updater)   # probes when calls % every == 0
    at the end:            probes.finish(updater)                             # unless the last call was probed

Why a fixed set of eval-split prompts: D never trains on them, and the same clips and the same
corruptions every time make successive probes comparable (a trend, not noise). The sync loop and the
async D learner build the set the same way and probe after the same step calls, so at staleness 0 their
records agree. Probing touches no RNG the training uses (own generators; the set is built under
`fork_rng`) and no D state (scores without grad; the tiny D has no batch statistics).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from afd_async.config.prompts import eval_prompts
from afd_async.eval.d_probes import DProbeResult, probe_discriminator
from afd_async.train.teacher_source import make_teacher_source

if TYPE_CHECKING:
    from afd_async.config.root import RootConfig

PROBE_TEACHER_SEED = 0  # the scene jitter of the probe clips (one fixed clip per eval prompt)


@dataclass(frozen=True)
class ProbeSet:
    """Held-out teacher clips `(N, 3, F, H, W)` in [-1, 1], their prompts and embeddings `(N, text_dim)`."""

    teacher: torch.Tensor
    text: torch.Tensor
    prompts: list[str]


def make_probe_set(cfg: "RootConfig", encode_text: Callable[[list[str]], torch.Tensor],
                   device: torch.device | str = "cpu") -> ProbeSet:
    """The first `train.d_probe_clips` eval prompts (`eval_prompts=` or the eval split), rendered by the local teacher
    at the student's size.

    Built under `fork_rng`, so whatever the renderer or the text encoder draws leaves torch's global RNG
    (which the models' init and checkpoints use) as it was.
    """
    prompts = [p.prompt for p in eval_prompts(cfg)[: cfg.train.d_probe_clips]]
    with torch.random.fork_rng(devices=[]):
        teacher = make_teacher_source(cfg).batch(prompts, [PROBE_TEACHER_SEED] * len(prompts))
        text = encode_text(prompts)
    return ProbeSet(teacher.to(device), text.to(device), prompts)


class DProbeMonitor:
    """Probes D on `probe_set` after every `every`-th D step call, and hands each record to `sink`.

    A record is `{"step", "phase": "d_probe", "d_step", "d_probe_<probe>": fraction, "d_probe_s"}`:
    `d_step` counts D step calls (warm-up included, as `DiscriminatorUpdater.calls` and the D
    learner's version do); `step` is the student steps completed by then (0 during warm-up).

    Args:
        probe_set: the held-out clips.
        every: D step calls between probes (> 0).
        warmup_steps: D-only warm-up calls (`algo.d_warmup_steps`).
        d_steps_per_student_step: D calls per student step after warm-up (the critic ratio).
        seed: seeds the corruptions (fixed for the run).
        sink: receives each record and its `DProbeResult`.
    """

    def __init__(self, probe_set: ProbeSet, *, every: int, warmup_steps: int, d_steps_per_student_step: int,
                 seed: int, sink: Callable[[dict[str, Any], DProbeResult], None]) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1 (0 = off is make_probe_monitor's None), got {every}")
        self.set, self.every, self.seed, self.sink = probe_set, every, seed, sink
        self.warmup_steps, self.ratio = warmup_steps, d_steps_per_student_step
        self.last_d_step: Optional[int] = None

    def student_step(self, d_step: int) -> int:
        """Student steps completed when D has made `d_step` calls (the sync loop's order: W warm-up calls,
        then `ratio` calls before each student step)."""
        if d_step <= self.warmup_steps or self.ratio < 1:
            return 0
        return (d_step - self.warmup_steps - 1) // self.ratio

    def probe(self, d: Any, d_step: int) -> DProbeResult:
        """Probe now (`d`: a `DiscriminatorUpdater`, a D module or a scorer; see `eval.d_probes.as_scorer`)."""
        t0 = time.monotonic()
        result = probe_discriminator(d, self.set.teacher, self.set.text, self.set.prompts, seed=self.seed)
        record = {"step": self.student_step(d_step), "phase": "d_probe", "d_step": d_step, **result.as_dict(),
                  "d_probe_s": round(time.monotonic() - t0, 4)}
        self.last_d_step = d_step
        self.sink(record, result)
        return result

    def after_step(self, updater: Any) -> Optional[DProbeResult]:
        """After a D step call: probe when `updater.calls` is a multiple of `every`."""
        if updater.calls % self.every:
            return None
        return self.probe(updater, updater.calls)

    def finish(self, updater: Any) -> Optional[DProbeResult]:
        """At the end of training: probe the final D unless its last call was just probed."""
        if updater.calls == 0 or self.last_d_step == updater.calls:
            return None
        return self.probe(updater, updater.calls)


def make_probe_monitor(cfg: "RootConfig", encode_text: Callable[[list[str]], torch.Tensor],
                       device: torch.device | str, *, sink: Callable[[dict[str, Any], DProbeResult], None]
                       ) -> Optional[DProbeMonitor]:
    """The run's monitor (`train.d_probe_every`, `train.d_probe_clips`), or None when probes are off."""
    if cfg.train.d_probe_every == 0:
        return None
    return DProbeMonitor(make_probe_set(cfg, encode_text, device), every=cfg.train.d_probe_every,
                         warmup_steps=cfg.algo.d_warmup_steps, d_steps_per_student_step=cfg.algo.d_steps_per_student_step,
                         seed=cfg.train.seed, sink=sink)
