"""Assemble and write what one benchmark call measured: the JSON, the Markdown tables, the pictures.

Kept apart from `quality.py` so the result's structure (issue 15) is in one
place: `{commit, size, device, seeds, prompts, lengths: {1x, 2x: {rows, paired}},
probes}` plus the extra keys a reader needs to reproduce or question a row
(commands, errors, curves, goals, timings).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from afd_async.config.root import RootConfig
from afd_async.eval.scorecard import ClipScore, summarise
from artefacts import format_paired, format_rows, plot_curves, write_clip_grid
from plan import Plan
from runs import PROBE_KEYS, RunResult
from scoring import QualityScorer
from stats import goal_checks, mean_probes, paired, row_record

GRID_ROWS = ("teacher", "base", "AFD", "SFT", "oracle")
Cells = Mapping[str, Mapping[str, Mapping[int, Sequence[ClipScore]]]]  # horizon -> row -> seed -> per prompt


def _clean(x: Any) -> Any:
    """NaN and inf as null: the JSON stays strict (a row that was not scored has no mean)."""
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        return _clean(x.item())
    return x


def device_of(runs: Sequence[RunResult]) -> str:
    """Where training ran: the runs' `train.device` and the host each ran on (`runs.host_description`)."""
    ok = [r for r in runs if not r.error]
    if not ok:
        return "no run trained"
    devices = sorted({r.train_device for r in ok})
    hosts = sorted({r.host for r in ok})
    return f"train.device={','.join(devices)} on {'; '.join(hosts)}"


def lengths_of(plan: Plan, scorer: QualityScorer, cells: Cells,
               frechet: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, dict[str, Any]]:
    """`lengths.<h>`: every row's record in table order, and AFD's paired differences with every other row."""
    n = len(scorer.prompts)
    out = {}
    for h in scorer.horizons:
        rows = cells[h.name]
        records = [row_record(name, rows[name], plan.seeds, n, motion_ref=h.motion_ref, speed_ref=h.speed_ref,
                              frechet=frechet[h.name][name]) for name in rows]
        out[h.name] = {"rows": records, "paired": paired(rows, plan.seeds, n)}
    return out


def write_results(*, args: argparse.Namespace, plan: Plan, cfg: RootConfig, scorer: QualityScorer,
                  runs: Sequence[RunResult], cells: Cells, frechet: Mapping[str, Mapping[str, Sequence[float]]],
                  clips: Mapping[str, Mapping[str, torch.Tensor]], errors: Mapping[str, str], commit: str,
                  wall: Mapping[str, float]) -> dict[str, Any]:
    """Write `<results>/quality_<size>[_tag].{json,md}`, the curves and the grid; print the tables and goals."""
    lengths = lengths_of(plan, scorer, cells, frechet)
    goals = goal_checks(lengths)
    afd_probes = [r.probes for r in runs if r.row.name == "AFD" and not r.error]
    probes: dict[str, Any] = mean_probes(afd_probes, PROBE_KEYS)
    probes["per_seed"] = {str(r.seed): r.probes for r in runs if r.row.name == "AFD" and not r.error}
    # K rollouts of a prompt share its teacher clip (train/plan.py): batch // K teacher clips a step
    teacher_budget = (cfg.algo.d_warmup_steps + cfg.train.steps) * max(1, cfg.train.batch_size
                                                                       // cfg.algo.rollouts_per_prompt)
    result = {
        "commit": commit, "size": args.size, "device": device_of(runs), "seeds": list(plan.seeds),
        "prompts": scorer.prompts, "lengths": lengths, "probes": probes,
        "command": "python " + shlex.join(sys.argv), "tag": args.tag, "policy": args.policy, "overlay": plan.experiment, "overrides": list(plan.extra),
        "rows": [r.name for r in plan.rows], "teacher_budget_clips_per_run": teacher_budget, **wall,
        "commands": {f"{r.row.name} seed {r.seed}": r.command for r in runs},
        "train_wall_s_per_run": {f"{r.row.name} seed {r.seed}": r.wall_s for r in runs},
        "errors": {**{f"{r.row.name} seed {r.seed}": r.error for r in runs if r.error}, **errors},
        "curves": {"key": next((r.curve_key for r in runs if r.curve_key), ""),
                   "runs": {f"{r.row.name} seed {r.seed}": r.curve for r in runs}},
        "goals": goals,
    }
    stem = f"quality_{args.size}{'_' + args.tag if args.tag else ''}"
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stem}.json").write_text(json.dumps(_clean(result), indent=1))
    _pictures(plan, cfg, scorer, runs, cells, clips, result["curves"]["key"], args.results, stem)
    md = [f"# Quality benchmark, size {args.size}{' (' + args.tag + ')' if args.tag else ''}", "",
          f"`{result['command']}` at {commit[:12]}; {result['device']}; policy `{args.policy}`; seeds {list(plan.seeds)} x "
          f"{len(scorer.prompts)} eval prompts = (seed, prompt) cells; {wall['wall_s']:.0f} s wall.", "",
          "Primary score: `physics_score` (relative velocity error; 0 exact, **1 = no motion**, 2 = opposite motion; "
          "lower is better), mean over cells with a 95 % bootstrap CI; `<1`: the CI lies below no motion. "
          "Paired: AFD − row over the same cells (negative = AFD better).", ""]
    if args.size == "smoke":
        md += ["**Smoke size**: a few training steps on 4 prompts; it proves the wiring, its numbers measure nothing.", ""]
    for h, res in lengths.items():
        md += [f"## Rollouts {h} the trained length", "", format_rows(res["rows"], markdown=True), "",
               format_paired(res["paired"], markdown=True), ""]
    md += ["## D probes at the end of AFD training (mean over seeds; `rho_physics_start` at the first probe)", "",
           ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} –" for k, v in probes.items() if k != "per_seed"),
           "", "## Goals", "", *[f"- {g}" for g in goals], ""]
    if result["errors"]:
        md += ["## Errors", "", *[f"- {k}: {v}" for k, v in result["errors"].items()], ""]
    (args.results / f"{stem}.md").write_text("\n".join(md))
    for h, res in lengths.items():
        print(f"\n== rollouts {h} the trained length: physics score over (seed, prompt) cells ==\n"
              f"{format_rows(res['rows'])}\n\n{format_paired(res['paired'])}")
    print(f"\nD probes (AFD, mean over seeds): {({k: v for k, v in probes.items() if k != 'per_seed'})}")
    print("\n" + "\n".join(goals))
    if result["errors"]:
        print(f"\nERRORS: {result['errors']}")
    print(f"\n[quality {args.size}] total wall {wall['wall_s']:.0f} s; results in {args.results / stem}.{{json,md}}")
    return result


def _pictures(plan: Plan, cfg: RootConfig, scorer: QualityScorer, runs: Sequence[RunResult], cells: Cells,
              clips: Mapping[str, Mapping[str, torch.Tensor]], curve_key: str, results, stem: str) -> None:
    """Learning curves, position-error drift on the long rollouts, and the clip grids (first seed, 4 prompts)."""
    curves: dict[str, list] = {}
    for r in runs:
        curves.setdefault(r.row.name, []).append(r.curve)
    long_name = scorer.horizons[-1].name
    drift = {}
    for name, per_seed in cells[long_name].items():
        if name in ("frozen-frame", "shuffled", "reversed"):  # static stands for them: the right pictures, no motion
            continue
        flat = [s for seed in plan.seeds for s in per_seed.get(seed, [])]
        if flat:
            drift[name] = summarise(flat)[1]
    teacher_drift = drift.pop("teacher", np.zeros(1))
    plot_curves(curves, drift, teacher_drift, cfg.student.fps, cfg.student.num_frames,
                results / f"{stem}_curves.png", curve_label=curve_key or "eval metric")
    names = [n for n in GRID_ROWS if n in clips[scorer.horizons[0].name]]
    write_clip_grid([clips[scorer.horizons[0].name][n] for n in names], names, cfg.student.fps, results / f"{stem}_grid")
    write_clip_grid([clips[long_name][n] for n in names], names, cfg.student.fps, results / f"{stem}_grid_long",
                    frames_in_strip=10)
