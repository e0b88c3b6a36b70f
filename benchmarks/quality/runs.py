"""Train one row for one seed: `afd run` or `afd sync` as a subprocess, exactly as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from plan import Plan, Row


@dataclass
class RunResult:
    row: Row
    seed: int
    out: Path
    wall_s: float
    command: str
    summary: dict[str, Any]
    eval_curve: list[tuple[int, float]]  # (student step, eval position error) from the run's own evaluator
    error: Optional[str] = None

    @property
    def checkpoint(self) -> Path:
        return self.out / "student_final.safetensors"


def command_for(plan: Plan, row: Row, seed: int, out: Path) -> list[str]:
    """The `afd` command line of a row (printed in BENCHMARKS.md as the way to reproduce it)."""
    return ["afd", row.mode, f"experiment={plan.experiment}", *row.overrides(), f"train.seed={seed}",
            *plan.extra, f"train.output_dir={out}"]


def train(plan: Plan, row: Row, seed: int, root: Path, *, env: Optional[dict[str, str]] = None) -> RunResult:
    """Run the row's training command and read back its summary and learning curve."""
    out = root / f"{row.name.replace(' ', '_').replace('=', '')}_seed{seed}"
    cmd = command_for(plan, row, seed, out)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "afd_async.cli", *cmd[1:]], capture_output=True, text=True,
                          timeout=plan.run_timeout_s, env={**os.environ, **(env or {})})
    wall = time.monotonic() - t0
    (out / "benchmark_stdout.log").parent.mkdir(parents=True, exist_ok=True)
    (out / "benchmark_stdout.log").write_text(proc.stdout[-20000:] + "\n--- stderr ---\n" + proc.stderr[-20000:])
    summary_path = out / "summary.json"
    if proc.returncode != 0 or not summary_path.is_file():
        return RunResult(row, seed, out, wall, " ".join(cmd), {}, [],
                         error=f"exit {proc.returncode}: {proc.stderr[-600:]}")
    curve: list[tuple[int, float]] = []
    metrics = out / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("phase") == "eval" and "eval_position_error" in rec:
                curve.append((int(rec["step"]), float(rec["eval_position_error"])))
    return RunResult(row, seed, out, wall, " ".join(cmd), json.loads(summary_path.read_text()), curve)
