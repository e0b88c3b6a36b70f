"""Every row's (seed, prompt) cells at every horizon, with a per-run cache of a trained row's scores.

The cache (`<run folder>/quality_scores_<policy>_p<prompts>_g<gt seeds>.pkl`)
lets `quality.py --score-only` score a run folder that no longer holds its
checkpoints: on the lent machine a fresh call can carry back a run's small
files and its cache (KBs) but not every checkpoint (MBs each, 64 MiB carry
limit). `--rescore` ignores the caches (after a change to the evaluator). Base and reference rows are not cached: they take seconds. `runs.train`
deletes a folder's caches before it trains into it again.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any, Optional

import torch

from afd_async.eval.scorecard import ClipScore
from plan import Plan
from runs import RunResult
from scoring import QualityScorer, rollout_all

GRID_PROMPTS = 4  # clips kept per row (first seed) for the grid pictures

Cells = dict[str, dict[str, dict[int, list[ClipScore]]]]  # horizon -> row -> seed -> per-prompt scores


def cache_path(run: RunResult, policy: str, scorer: QualityScorer, gt_seeds: int) -> Path:
    return run.out / f"quality_scores_{policy}_p{len(scorer.prompts)}_g{gt_seeds}.pkl"


def _load(path: Path, scorer: QualityScorer) -> Optional[dict[str, Any]]:
    """The cached horizons if the cache was made on these prompts and horizons (None otherwise)."""
    if not path.is_file():
        return None
    data = pickle.loads(path.read_bytes())
    if data.get("prompts") != scorer.prompts or set(data["horizons"]) != {h.name for h in scorer.horizons}:
        return None
    return data["horizons"]


def _to_uint8(v: torch.Tensor) -> torch.Tensor:
    return v.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def score_all(plan: Plan, scorer: QualityScorer, runs: dict[tuple[str, int], RunResult],
              policy: str, *, use_cache: bool = True) -> tuple[Cells, dict[str, dict[str, list[float]]], dict[str, dict[str, torch.Tensor]],
                                    dict[str, str]]:
    """Score every row at every seed and horizon.

    Returns:
        `(cells[h][row][seed], frechet[h][row] (one per seed), clips[h][row] (first seed, first prompts), errors)`;
        a trained row without a usable run (failed, missing, no checkpoint and no cache) is left out of
        `cells` at that seed and named in `errors`.
    """
    hs = [h.name for h in scorer.horizons]
    cells: Cells = {h: {r.name: {} for r in plan.rows} for h in hs}
    frechet: dict[str, dict[str, list[float]]] = {h: {r.name: [] for r in plan.rows} for h in hs}
    clips: dict[str, dict[str, torch.Tensor]] = {h: {} for h in hs}
    errors: dict[str, str] = {}
    ref_names = [r.algo for r in plan.rows if r.mode == "reference" and r.algo]
    base = scorer.load_student(None)

    def score(videos: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
        out = {}
        for h in scorer.horizons:
            scored = scorer.score(videos[h.name], h)
            out[h.name] = {"scores": scored.scores, "frechet": scored.frechet,
                           "clips": _to_uint8(videos[h.name][:GRID_PROMPTS])}
        return out

    def keep(row: str, seed: int, scored: dict[str, dict[str, Any]]) -> None:
        for h in hs:
            cells[h][row][seed] = scored[h]["scores"]
            frechet[h][row].append(scored[h]["frechet"])
            if seed == plan.seeds[0]:
                clips[h][row] = scored[h]["clips"].float().div(127.5).sub(1.0)

    for seed in plan.seeds:
        t0 = time.monotonic()
        refs = {h.name: scorer.reference_clips(h, seed, ref_names) for h in scorer.horizons}
        for row in plan.rows:
            if row.mode == "reference":
                keep(row.name, seed, score({h: refs[h][row.algo] for h in hs}))
            elif row.mode == "base":
                keep(row.name, seed, score(rollout_all(scorer, base, seed)))
            else:
                run = runs.get((row.name, seed))
                if run is None or run.error:
                    errors[f"{row.name} seed {seed}"] = run.error if run else "not trained"
                    continue
                path = cache_path(run, policy, scorer, plan.gt_seeds)
                scored = _load(path, scorer) if use_cache else None
                if scored is None:
                    ckpt = run.checkpoint(policy)
                    if not ckpt.is_file():
                        errors[f"{row.name} seed {seed}"] = f"no checkpoint {ckpt} and no score cache {path.name}"
                        continue
                    scored = score(rollout_all(scorer, scorer.load_student(ckpt), seed))
                    path.write_bytes(pickle.dumps({"prompts": scorer.prompts, "horizons": scored}))
                keep(row.name, seed, scored)
        print(f"[quality] scored seed {seed}: {time.monotonic() - t0:.0f} s", flush=True)
    return cells, frechet, clips, errors
