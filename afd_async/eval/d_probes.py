"""Discriminator probes: does D judge physics and the prompt, or only motion energy? (DESIGN.md §2.2)

A D that wins the teacher-vs-student game by scoring how much the pixels move gives the student a
reward for moving, not for moving correctly. These probes ask D questions a physics-aware,
prompt-aware D answers right and a motion-energy D cannot:

    shuffled     D(teacher) > D(teacher, frames shuffled in time)
    reversed     D(teacher) > D(teacher played backwards)
    frame_drop   D(teacher) > D(teacher with frames dropped and others repeated)
    prompt_swap  D(clip | its prompt) > D(clip | another clip's prompt)      (a derangement of the prompts)

Each is the fraction of held-out teacher clips answered right (a tie counts half, so a D that ignores
the prompt scores 0.5 on `prompt_swap`, chance; 1.0 is right on every clip). `error_spearman` is
Spearman's ρ between D's scores of student rollouts and minus their true physics error (given by the
evaluator): +1 when D ranks rollouts exactly as the ground truth does.

Deterministic: the corruptions come from generators seeded by `seed` and the probe's name, never from
torch's global RNG, so probing during training changes nothing the training computes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from afd_async.algo.negatives import NEGATIVE_KINDS, NegativeKind, make_negative

Scorer = Callable[[torch.Tensor, torch.Tensor, Sequence[str]], torch.Tensor]
"""`scorer(video (N, C, F, H, W), text (N, text_dim), prompts) -> (N,)` scores, higher = more teacher-like."""

# the probe names, in result order: every corruption whose winner is the real clip (not time_warp, whose paced
# winner is itself resampled)
PROBES: tuple[NegativeKind, ...] = tuple(k for k in NEGATIVE_KINDS if k != "time_warp")


@dataclass(frozen=True)
class DProbeResult:
    """Fractions of held-out teacher clips where D prefers the real clip (0.5 = chance, 1 = always right).

    Attributes:
        shuffled: D(teacher) > D(teacher shuffled in time).
        reversed: D(teacher) > D(teacher reversed).
        frame_drop: D(teacher) > D(teacher with frames dropped and repeated).
        prompt_swap: D(clip | its prompt) > D(clip | another prompt); NaN when no clip has another prompt.
        n_clips: number of teacher clips probed.
        error_spearman: ρ(D score, −true error) over student rollouts; None when not measured.
    """

    shuffled: float
    reversed: float
    frame_drop: float
    prompt_swap: float
    n_clips: int
    error_spearman: Optional[float] = None

    def as_dict(self, prefix: str = "d_probe_") -> dict[str, float]:
        """`{prefix}<probe>` for every probe measured (`error_spearman` only when measured; no `n_clips`)."""
        out = {f"{prefix}{k}": float(getattr(self, k)) for k in PROBES}
        if self.error_spearman is not None:
            out[f"{prefix}error_spearman"] = float(self.error_spearman)
        return out


def as_scorer(d: Any) -> Scorer:
    """The probes' uniform call for any discriminator handle.

    Accepts a `DiscriminatorUpdater` (`updater.score(video, text, prompts)`), an `nn.Module` with
    `score(video, prompts=..., text=...)` (the uniform D call), an `nn.Module` without `score`
    (`d(video, text)`), or a plain `Scorer`. Modules are scored in eval mode without grad and
    put back in the mode they were in.
    """
    if isinstance(d, nn.Module):
        call = ((lambda v, t, p: d.score(v, prompts=list(p), text=t)) if hasattr(d, "score")
                else (lambda v, t, p: d(v, t)))

        def module_scorer(video: torch.Tensor, text: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
            was_training = d.training
            d.eval()
            try:
                with torch.no_grad():
                    return call(video, text, prompts).float()
            finally:
                d.train(was_training)

        return module_scorer
    if hasattr(d, "score"):
        return lambda video, text, prompts: d.score(video, text, prompts=list(prompts)).float()
    if callable(d):
        return d
    raise TypeError(f"cannot score with {type(d).__name__}: need a DiscriminatorUpdater, a module or a callable")


def _score(scorer: Scorer, video: torch.Tensor, text: torch.Tensor, prompts: Sequence[str],
           batch_size: int) -> torch.Tensor:
    parts = [scorer(video[i : i + batch_size], text[i : i + batch_size], list(prompts[i : i + batch_size]))
             for i in range(0, video.shape[0], batch_size)]
    return torch.cat([p.detach().float().reshape(-1).cpu() for p in parts])


def _generator(seed: int, probe: str) -> torch.Generator:
    """A CPU generator per (seed, probe): a probe's corruptions do not depend on which other probes ran."""
    digest = hashlib.blake2b(f"d_probe:{seed}:{probe}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF)


def win_fraction(real: torch.Tensor, other: torch.Tensor, valid: Optional[torch.Tensor] = None) -> float:
    """Fraction of (valid) rows with `real > other`; a tie counts half. NaN when no row is valid."""
    win = (real > other).double() + 0.5 * (real == other).double()
    if valid is not None:
        win = win[valid.cpu()]
    return float(win.mean()) if win.numel() else math.nan


def probe_discriminator(d: Any, teacher: torch.Tensor, text: torch.Tensor, prompts: Sequence[str], *, seed: int = 0,
                        batch_size: int = 8, rollouts: Optional[torch.Tensor] = None,
                        rollout_errors: Optional[Sequence[float] | np.ndarray] = None,
                        rollout_text: Optional[torch.Tensor] = None,
                        rollout_prompts: Optional[Sequence[str]] = None) -> DProbeResult:
    """Run every probe on held-out teacher clips (and, if given, ρ on student rollouts).

    Args:
        d: the discriminator (see `as_scorer`).
        teacher: `(N, 3, F, H, W)` teacher clips in [-1, 1] (held out: prompts D never trained on); F ≥ 2.
        text: `(N, text_dim)` their prompt embeddings; `prompts` their texts (N ≥ 2 distinct for `prompt_swap`).
        seed: seeds the corruptions (fixed across a run, so successive probes compare like with like).
        batch_size: clips per D call.
        rollouts: `(M, 3, F, H, W)` student rollouts; with `rollout_errors` `(M,)` their true errors
            (lower is better), gives `error_spearman`. Their prompts default to `text`/`prompts`.
    """
    if teacher.shape[0] != text.shape[0] or teacher.shape[0] != len(prompts):
        raise ValueError(f"{teacher.shape[0]} clips, {text.shape[0]} embeddings and {len(prompts)} prompts differ")
    scorer = as_scorer(d)
    real = _score(scorer, teacher, text, prompts, batch_size)
    fractions = {}
    for kind in PROBES:
        neg = make_negative(kind, teacher, text, prompts, _generator(seed, kind))
        fractions[kind] = win_fraction(real, _score(scorer, neg.video, neg.text, neg.prompts, batch_size), neg.valid)
    rho = None
    if rollouts is not None or rollout_errors is not None:
        if rollouts is None or rollout_errors is None:
            raise ValueError("error_spearman needs both rollouts and rollout_errors")
        rho = error_spearman(scorer, rollouts, rollout_text if rollout_text is not None else text,
                             list(rollout_prompts) if rollout_prompts is not None else list(prompts), rollout_errors,
                             batch_size=batch_size)
    return DProbeResult(n_clips=int(teacher.shape[0]), error_spearman=rho, **fractions)


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman needs two 1-d arrays of one length, got {x.shape} and {y.shape}")

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        for value in np.unique(v):  # ties share their mean rank
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    sx, sy = rx.std(), ry.std()
    if len(x) < 2 or sx == 0 or sy == 0:
        return math.nan
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def error_spearman(d: Any, rollouts: torch.Tensor, text: torch.Tensor, prompts: Sequence[str],
                   errors: Sequence[float] | np.ndarray, *, batch_size: int = 8) -> float:
    """ρ(D score, −true error) over student rollouts `(M, 3, F, H, W)` with per-clip true errors `(M,)`."""
    err = np.asarray(errors, dtype=np.float64).reshape(-1)
    if err.shape[0] != rollouts.shape[0]:
        raise ValueError(f"{rollouts.shape[0]} rollouts but {err.shape[0]} errors")
    scores = _score(as_scorer(d), rollouts, text, prompts, batch_size).numpy()
    return spearman(scores, -err)
