"""The D probes during training: a fixed held-out probe set, probed every `train.d_probe_every` D step calls.

    probes = make_probe_monitor(cfg, text.encode, device, sink=...)   # None when train.d_probe_every = 0
    for each batch:        probes.before_step(updater, batch)                      # D's scores before it trains on it
    for each D step call:  updater.step(batch); probes.after_step(updater, batch)   # probes when calls % every == 0
    at the end:            probes.finish(updater)                                    # unless the last call was probed

Why a fixed set of eval-split prompts: D never trains on them, and the same clips and the same
corruptions every time make successive probes comparable (a trend, not noise). The sync loop and the
async D learner build the set the same way and probe after the same step calls, so at staleness 0 their
records agree. Probing touches no RNG the training uses (own generators; the set is built under
`fork_rng`) and no D state (scores without grad; the tiny D has no batch statistics).

ρ(D, −error) (issue 15.2), `d_probe_rho_physics`: Spearman's ρ between D's score and minus the true physics
error (`OracleReward.errors`) of the student clips D was given since the last probe, the very clips whose D
scores became the student's advantages (so D has trained on them: this is the reward the student saw, not a
held-out test). Pooling the batches since the last probe (at most `RHO_MAX_CLIPS`, the latest) gives ρ more
clips than one batch has. `d_probe_rho_physics_heldout` is the held-out test of issue 15.2: the same ρ for
D's scores of each batch taken *before* D's first step on it (`before_step`), so on student rollouts D had not
yet trained on. Logged only when the teacher is the embedded renderer (teacher.kind=local,
teacher.server.backend=physics): only it has the ground truth; with any other teacher the key is absent.
In a data-parallel D learner only rank 0 probes, so its ρ ranks rank 0's shard of each batch.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from afd_async.config.prompts import eval_prompts
from afd_async.eval.d_probes import DProbeResult, as_scorer, error_spearman, probe_discriminator, spearman
from afd_async.train.oracle_reward import OracleReward, make_oracle_reward
from afd_async.train.teacher_source import make_teacher_source

if TYPE_CHECKING:
    from afd_async.config.root import RootConfig

PROBE_TEACHER_SEED = 0  # the scene jitter of the probe clips (one fixed clip per eval prompt)
RHO_MAX_CLIPS = 64  # student clips kept for ρ(D, −error) between probes (the latest; held on CPU)


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
    learner's version do); `step` is the student steps completed by then (0 during warm-up). With
    `oracle`, also `d_probe_rho_physics` (ρ(D score, −true error) of the student clips of the batches
    since the last probe; None when ρ is undefined: fewer than 2 clips, or constant scores or errors) and
    `d_probe_rho_physics_clips` (how many clips it ranked).

    Args:
        probe_set: the held-out clips.
        every: D step calls between probes (> 0).
        warmup_steps: D-only warm-up calls (`algo.d_warmup_steps`).
        d_steps_per_student_step: D calls per student step after warm-up (the critic ratio).
        seed: seeds the corruptions (fixed for the run).
        sink: receives each record and its `DProbeResult`.
        oracle: the true physics error of a student clip (None: no ground truth, ρ not logged).
        rho_max_clips: the most student clips kept for ρ between two probes (the latest).
    """

    def __init__(self, probe_set: ProbeSet, *, every: int, warmup_steps: int, d_steps_per_student_step: int,
                 seed: int, sink: Callable[[dict[str, Any], DProbeResult], None],
                 oracle: Optional[OracleReward] = None, rho_max_clips: int = RHO_MAX_CLIPS) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1 (0 = off is make_probe_monitor's None), got {every}")
        if rho_max_clips < 2:
            raise ValueError(f"rho_max_clips must be >= 2 (a rank correlation needs two clips), got {rho_max_clips}")
        self.set, self.every, self.seed, self.sink = probe_set, every, seed, sink
        self.warmup_steps, self.ratio = warmup_steps, d_steps_per_student_step
        self.oracle, self.rho_max_clips = oracle, rho_max_clips
        self.last_d_step: Optional[int] = None
        self._pool: list[tuple[torch.Tensor, torch.Tensor, list[str]]] = []  # (clips, text, prompts) on CPU
        self._held: list[torch.Tensor] = []  # per pooled batch, D's scores before its first step on it (CPU)
        self._pending: Optional[tuple[weakref.ref, torch.Tensor]] = None  # `before_step`'s batch and scores
        self._last_batch: Optional[weakref.ref] = None  # the batch last pooled (D calls repeat a batch)

    def student_step(self, d_step: int) -> int:
        """Student steps completed when D has made `d_step` calls (the sync loop's order: W warm-up calls,
        then `ratio` calls before each student step)."""
        if d_step <= self.warmup_steps or self.ratio < 1:
            return 0
        return (d_step - self.warmup_steps - 1) // self.ratio

    def before_step(self, d: Any, batch: Any) -> None:
        """Score `batch`'s student clips with D as it is before training on them (the held-out ρ); no-op without
        an oracle. No grad, no RNG, no D state touched."""
        if self.oracle is None or batch is None:
            return
        device, score = self.set.teacher.device, as_scorer(d)
        with torch.no_grad():
            scores = score(batch.student_rgb.to(device), batch.text.to(device), list(batch.prompts))
        self._pending = (weakref.ref(batch), scores.detach().float().cpu())

    def observe(self, batch: Any) -> None:
        """Pool a `PairBatch`'s student clips for ρ (once per batch, however many D calls it gets; no-op
        without an oracle). Copies to CPU: nothing of the training's tensors is kept or changed."""
        if self.oracle is None or batch is None or (self._last_batch is not None and self._last_batch() is batch):
            return
        self._last_batch = weakref.ref(batch)
        self._pool.append((batch.student_rgb.detach().float().cpu(), batch.text.detach().float().cpu(),
                           list(batch.prompts)))
        pending = self._pending
        scored = pending is not None and pending[0]() is batch
        held = pending[1] if scored else torch.full((len(batch.prompts),), math.nan)  # NaN: ρ held out is None
        self._held.append(held)
        self._pending = None
        while sum(len(p) for _, _, p in self._pool) - len(self._pool[0][2]) >= self.rho_max_clips:
            self._pool.pop(0)  # the oldest whole batch, while the rest still fill the cap
            self._held.pop(0)

    def rho_physics(self, d: Any) -> tuple[Optional[float], int, Optional[float]]:
        """(ρ(D score, −true error), clips ranked, the held-out ρ) over the pooled student clips (the latest
        `rho_max_clips`); the held-out ρ ranks D's scores from before it trained on each clip (None where a batch
        was not scored by `before_step`)."""
        assert self.oracle is not None
        if not self._pool:
            return None, 0, None
        video = torch.cat([v for v, _, _ in self._pool])[-self.rho_max_clips:]
        text = torch.cat([t for _, t, _ in self._pool])[-self.rho_max_clips:]
        prompts = [p for _, _, ps in self._pool for p in ps][-self.rho_max_clips:]
        held = torch.cat(self._held)[-self.rho_max_clips:]
        errors = self.oracle.errors(video, prompts)
        device, score = self.set.teacher.device, as_scorer(d)
        rho = error_spearman(lambda v, t, p: score(v.to(device), t.to(device), p), video, text, prompts, errors)
        rho_held = spearman(held.numpy(), -errors) if bool(torch.isfinite(held).all()) else math.nan
        finite = lambda x: x if math.isfinite(x) else None  # noqa: E731 - undefined ρ (ties everywhere) is None
        return finite(rho), len(prompts), finite(rho_held)

    def probe(self, d: Any, d_step: int) -> DProbeResult:
        """Probe now (`d`: a `DiscriminatorUpdater`, a D module or a scorer; see `eval.d_probes.as_scorer`)."""
        t0 = time.monotonic()
        result = probe_discriminator(d, self.set.teacher, self.set.text, self.set.prompts, seed=self.seed)
        record = {"step": self.student_step(d_step), "phase": "d_probe", "d_step": d_step, **result.as_dict()}
        if self.oracle is not None:
            rho, clips, rho_held = self.rho_physics(d)
            record["d_probe_rho_physics"], record["d_probe_rho_physics_clips"] = rho, clips
            record["d_probe_rho_physics_heldout"] = rho_held
            self._pool.clear()  # each probe's ρ ranks its own clips
            self._held.clear()
        record["d_probe_s"] = round(time.monotonic() - t0, 4)
        self.last_d_step = d_step
        self.sink(record, result)
        return result

    def after_step(self, updater: Any, batch: Any = None) -> Optional[DProbeResult]:
        """After a D step call on `batch` (a `PairBatch`, pooled for ρ): probe when `updater.calls` is a
        multiple of `every`."""
        self.observe(batch)
        if updater.calls % self.every:
            return None
        return self.probe(updater, updater.calls)

    def finish(self, updater: Any) -> Optional[DProbeResult]:
        """At the end of training: probe the final D unless its last call was just probed."""
        if updater.calls == 0 or self.last_d_step == updater.calls:
            return None
        return self.probe(updater, updater.calls)


def has_ground_truth(cfg: "RootConfig") -> bool:
    """Whether the run's teacher is the embedded renderer, the only one whose prompts have a true physics error."""
    return cfg.teacher.kind == "local" and cfg.teacher.server.backend == "physics"


def make_probe_monitor(cfg: "RootConfig", encode_text: Callable[[list[str]], torch.Tensor],
                       device: torch.device | str, *, sink: Callable[[dict[str, Any], DProbeResult], None]
                       ) -> Optional[DProbeMonitor]:
    """The run's monitor (`train.d_probe_every`, `train.d_probe_clips`), or None when probes are off.

    It logs ρ(D, −error) only when `has_ground_truth(cfg)` (the embedded renderer teacher); otherwise not.
    """
    if cfg.train.d_probe_every == 0:
        return None
    return DProbeMonitor(make_probe_set(cfg, encode_text, device), every=cfg.train.d_probe_every,
                         warmup_steps=cfg.algo.d_warmup_steps, d_steps_per_student_step=cfg.algo.d_steps_per_student_step,
                         seed=cfg.train.seed, sink=sink, oracle=make_oracle_reward(cfg) if has_ground_truth(cfg) else None)
