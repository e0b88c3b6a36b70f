"""Train one row for one seed (`afd run` / `afd sync` as a subprocess, exactly as a user types it) and read its folder back.

Training and scoring are separate steps that may run in different processes
(`quality.py --train-only` on one call of a lent machine, `--score-only` on a
later one), so everything the scorer needs is read back from the run folder
`<work>/<row>_seed<seed>/`: `summary.json`, `config.json`, `metrics.jsonl` and
the two saved policies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from plan import Plan, Row

Policy = Literal["ema", "old"]
CHECKPOINTS: dict[str, str] = {"ema": "student_ema.safetensors", "old": "student_final.safetensors"}
# `d_probe_<key>` in metrics.jsonl; `rho_physics_start` is the first logged ρ(D, −true error) (issue 15.2)
PROBE_KEYS = ("shuffled", "reversed", "frame_drop", "prompt_swap", "rho_physics_start", "rho_physics",
              "rho_physics_heldout")


@dataclass
class RunResult:
    """One training's folder, read back.

    Attributes:
        curve: `(student step, value)` of the run's own evaluator (`eval_physics_score` when the run logs it,
            else `eval_position_error`), for the learning-curve plot.
        probes: the last logged `d_probe_<key>` of the run (absent keys are missing), and `rho_physics_start`,
            the first logged `d_probe_rho_physics` (start → end of ρ(D, −true error)).
    """

    row: Row
    seed: int
    out: Path
    wall_s: float
    command: str
    summary: dict[str, Any]
    curve: list[tuple[int, float]] = field(default_factory=list)
    curve_key: str = ""
    probes: dict[str, float] = field(default_factory=dict)
    train_device: str = "cpu"
    host: str = "unknown host"
    error: Optional[str] = None

    def checkpoint(self, policy: Policy) -> Path:
        """The saved policy to score: `ema` (what the run's own evaluation rolls out by default) or `old` (θ_old)."""
        return self.out / CHECKPOINTS[policy]


def host_description() -> str:
    """Where this process runs, as the results' `device` names it: whether torch sees CUDA, and which card."""
    import torch

    if torch.cuda.is_available():
        return f"a host with CUDA ({torch.cuda.get_device_name(0)} x{torch.cuda.device_count()})"
    return "a host without CUDA"


def run_dir(root: Path, row: Row, seed: int) -> Path:
    return root / f"{row.name.replace(' ', '_').replace('=', '')}_seed{seed}"


def command_for(plan: Plan, row: Row, seed: int, out: Path) -> list[str]:
    """The `afd` command line of a row (quoted in the results as the way to reproduce it)."""
    return ["afd", row.mode, f"experiment={plan.experiment}", *row.overrides(), f"train.seed={seed}",
            *plan.extra, f"train.output_dir={out}"]


def train(plan: Plan, row: Row, seed: int, root: Path, *, env: Optional[dict[str, str]] = None) -> RunResult:
    """Run the row's training command, then read its folder back (`load_run`)."""
    out = run_dir(root, row, seed)
    for stale in out.glob("quality_scores_*.pkl"):  # scores of an earlier training in this folder
        stale.unlink()
    cmd = command_for(plan, row, seed, out)
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "afd_async.cli", *cmd[1:]], capture_output=True, text=True,
                              timeout=plan.run_timeout_s, env={**os.environ, **(env or {})})
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, stdout, stderr = -1, str(exc.stdout or ""), f"timed out after {plan.run_timeout_s:.0f} s"
    wall = time.monotonic() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark_stdout.log").write_text(stdout[-20000:] + "\n--- stderr ---\n" + stderr[-20000:])
    (out / "benchmark_run.json").write_text(json.dumps({"command": " ".join(cmd), "wall_s": round(wall, 1),
                                                        "exit": code, "host": host_description()}))
    res = load_run(plan, row, seed, root)
    if code != 0:
        res.error = f"exit {code}: {stderr[-600:]}"
    return res


def load_run(plan: Plan, row: Row, seed: int, root: Path) -> RunResult:
    """A finished run folder as a `RunResult`; `error` says why it cannot be scored (missing, or no summary)."""
    out = run_dir(root, row, seed)
    meta_path = out / "benchmark_run.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    res = RunResult(row, seed, out, float(meta.get("wall_s", float("nan"))),
                    meta.get("command", " ".join(command_for(plan, row, seed, out))), {})
    res.host = str(meta.get("host", res.host))
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        res.error = f"no {summary_path}" + ("" if out.is_dir() else " (never trained: run --train-only first)")
        return res
    res.summary = json.loads(summary_path.read_text())
    config_path = out / "config.json"
    if config_path.is_file():
        res.train_device = str(json.loads(config_path.read_text()).get("train", {}).get("device", "cpu"))
    metrics = out / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.is_file() else []
    evals = [r for r in records if r.get("phase") == "eval"]
    res.curve_key = next((k for k in ("eval_physics_score", "eval_position_error") if any(k in r for r in evals)), "")
    res.curve = [(int(r["step"]), float(r[res.curve_key])) for r in evals if res.curve_key in r]
    for r in records:  # the last value of each probe wins: the probe at the end of training
        for k in PROBE_KEYS:
            if f"d_probe_{k}" in r and r[f"d_probe_{k}"] is not None:
                res.probes[k] = float(r[f"d_probe_{k}"])
    rhos = [float(r["d_probe_rho_physics"]) for r in records if r.get("d_probe_rho_physics") is not None]
    if rhos:
        res.probes["rho_physics_start"] = rhos[0]
    return res
