"""From per-cell scores to the result rows, the paired differences and the goal checks.

The primary score is `physics_score` (relative velocity error, lower is
better; `afd_async.eval.kinematic_score`). A clip without motion scores exactly
1 and the untrained base ~1.1, so a trained row claims it learned motion only
if it beats *both* base and `static` with a paired 95 % CI that excludes zero.
Cells are (seed, prompt); a row missing a seed has NaN cells there, which the
bootstrap drops from both sides of a pair (`afd_async.eval.bootstrap`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from afd_async.eval.bootstrap import bootstrap_mean, paired_difference
from afd_async.eval.scorecard import LAW_KEYS, ClipScore, summarise

# Row -> seed -> per-prompt scores (one horizon).
RowCells = Mapping[int, Sequence[ClipScore]]

MAIN = "AFD"
BEAT = ("base", "SFT", "GAN", "frozen-D", "static")  # AFD must beat each with a paired CI below zero
ORACLE_SHARE = 0.60  # AFD recovers at least this share of the oracle's gain over base
SPEED_TOLERANCE = 0.10  # AFD's speed ratio within this of the teacher row's


def matrix(cells: RowCells, seeds: Sequence[int], n_prompts: int) -> np.ndarray:
    """`(S, P)` physics scores, NaN where a seed was not scored (so rows with missing seeds still pair)."""
    out = np.full((len(seeds), n_prompts), np.nan)
    for i, seed in enumerate(seeds):
        if seed in cells:
            out[i] = [s.physics_score for s in cells[seed]]
    return out


def row_record(name: str, cells: RowCells, seeds: Sequence[int], n_prompts: int, *, motion_ref: float,
               speed_ref: float, frechet: Sequence[float]) -> dict[str, Any]:
    """One row of `lengths.<h>.rows`: the score with its 95 % CI and the means over cells of its diagnostics."""
    ci = bootstrap_mean(matrix(cells, seeds, n_prompts))
    flat = [s for seed in seeds if seed in cells for s in cells[seed]]
    record: dict[str, Any] = {"name": name, "score": {"mean": ci.mean, "ci_low": ci.lo, "ci_high": ci.hi},
                              "n_cells": ci.n_cells, "seeds_scored": [s for s in seeds if s in cells]}
    if not flat:
        return record | {"detected": None, "laws": {}, "motion_ratio": None, "speed_ratio": None, "flicker": None,
                         "position_error": None}
    m, _ = summarise(flat)
    return record | {
        "detected": m["detection_rate"],
        "laws": {k: m[k] for k in LAW_KEYS if k in m},
        "motion_ratio": m["motion_magnitude"] / max(motion_ref, 1e-9),
        "speed_ratio": m["object_speed"] / max(speed_ref, 1e-9),
        "flicker": m["flicker"],
        "position_error": m["position_error"],
        "kinematic": {k: m[f"kinematic_{k}"] for k in ("acceleration_error", "speed_error", "shown_motion")},
        "frechet": float(np.mean(frechet)) if frechet else None,
        "below_static": bool(ci.hi < 1.0),  # the CI of the score lies below no-motion's exact 1
    }


def paired(rows: Mapping[str, RowCells], seeds: Sequence[int], n_prompts: int, *, a: str = MAIN) -> list[dict[str, Any]]:
    """`a` − every other row, paired cell by cell: mean and 95 % CI (negative = `a` is better)."""
    if a not in rows:
        return []
    ma = matrix(rows[a], seeds, n_prompts)
    out = []
    for b, cells in rows.items():
        if b == a:
            continue
        d = paired_difference(ma, matrix(cells, seeds, n_prompts))
        out.append({"a": a, "b": b, "diff_mean": d.mean, "ci_low": d.lo, "ci_high": d.hi, "n_cells": d.n_cells})
    return out


def _get(records: Sequence[Mapping[str, Any]], name: str) -> Optional[Mapping[str, Any]]:
    return next((r for r in records if r["name"] == name), None)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def goal_checks(lengths: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The issue's goals as PASS / FAIL lines with the numbers (a row that was not scored fails its goal)."""
    lines = []
    for h, res in lengths.items():
        diffs = {p["b"]: p for p in res["paired"] if p["a"] == MAIN}
        for b in BEAT:
            p = diffs.get(b)
            if p is None or not _finite(p["ci_high"]):
                lines.append(f"FAIL  [{h}] AFD beats {b}: not scored")
                continue
            ok = p["ci_high"] < 0.0
            why = " (below static = no motion: learned motion)" if b == "static" else ""
            lines.append(f"{'PASS' if ok else 'FAIL'}  [{h}] AFD beats {b}{why}: AFD − {b} = {p['diff_mean']:+.3f} "
                         f"[{p['ci_low']:+.3f}, {p['ci_high']:+.3f}] (paired 95% CI must lie below 0)")
    for h, res in lengths.items():
        recs = res["rows"]
        base, afd, oracle = (_get(recs, n) for n in ("base", MAIN, "oracle"))
        if not (base and afd and oracle) or not all(_finite(r["score"]["mean"]) for r in (base, afd, oracle)):
            lines.append(f"FAIL  [{h}] AFD recovers >= {ORACLE_SHARE:.0%} of the oracle's gain over base: "
                         "oracle (or AFD/base) not scored")
            continue
        b, a, o = base["score"]["mean"], afd["score"]["mean"], oracle["score"]["mean"]
        if o >= base["score"]["ci_low"]:  # a gain inside base's own CI: the share would divide by noise
            lines.append(f"FAIL  [{h}] AFD recovers >= {ORACLE_SHARE:.0%} of the oracle's gain over base: undefined, "
                         f"the oracle {o:.3f} does not improve on base {b:.3f} beyond base's 95% CI "
                         f"[{base['score']['ci_low']:.3f}, {base['score']['ci_high']:.3f}]")
            continue
        share = (b - a) / (b - o)
        lines.append(f"{'PASS' if share >= ORACLE_SHARE else 'FAIL'}  [{h}] AFD recovers {share:.0%} of the oracle's "
                     f"gain over base: (base {b:.3f} − AFD {a:.3f}) / (base − oracle {o:.3f}) (goal >= {ORACLE_SHARE:.0%})")
    for h, res in lengths.items():
        afd, teacher = _get(res["rows"], MAIN), _get(res["rows"], "teacher")
        if not (afd and teacher and _finite(afd["speed_ratio"]) and _finite(teacher["speed_ratio"])):
            lines.append(f"FAIL  [{h}] AFD speed ratio within {SPEED_TOLERANCE:.0%} of the teacher's: not scored")
            continue
        rel = afd["speed_ratio"] / teacher["speed_ratio"]
        lines.append(f"{'PASS' if abs(rel - 1) <= SPEED_TOLERANCE else 'FAIL'}  [{h}] AFD tracked motion (speed ratio "
                     f"{afd['speed_ratio']:.2f}) is {rel:.2f}x the teacher's ({teacher['speed_ratio']:.2f}) "
                     f"(goal within {SPEED_TOLERANCE:.0%})")
    return lines


def mean_probes(per_seed: Sequence[Mapping[str, float]], keys: Sequence[str]) -> dict[str, Optional[float]]:
    """Mean over seeds of each D probe (seeds that did not log a probe are left out; None when none did)."""
    out: dict[str, Optional[float]] = {}
    for k in keys:
        vals = [p[k] for p in per_seed if k in p and math.isfinite(p[k])]
        out[k] = float(np.mean(vals)) if vals else None
    return out
