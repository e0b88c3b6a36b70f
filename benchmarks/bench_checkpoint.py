"""A learner checkpoint's cost on the step thread: written inline against written in the background, same run.

Run: `python benchmarks/bench_checkpoint.py [--mb 256] [--every 1] [--steps 12] [--dir PATH]`.

A `Checkpointer` over a learner whose state is `--mb` MB of float32 (a model plus its two AdamW moments,
in three equal parts) checkpoints every `--every` steps into `--dir` (default: a temporary folder under
the benchmark's own folder, on the repository's disk, since /tmp may be memory); a step is a fixed
amount of real compute (matmuls, about `--step-s` seconds, calibrated once), so the background write
competes for the CPU and the disk as it does in a learner. Reported per checkpoint: the seconds
`trained()` held the step thread (inline: snapshot, serialise, fsync, rename; background: the
snapshot, plus any wait for the previous write), and the steps' wall time, for both modes.
`learner_busy`'s `checkpoint` share in `plumbing.py` is the same quantity inside a whole run, where
the tiny models' checkpoints are small and the figure depends mostly on how busy the disk is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from afd_async.runtime.learner_state import Checkpointer, CheckpointStore


class _Learner:
    """A state of `mb` MB: parameters and two optimizer moments, changed in place by every step."""

    def __init__(self, mb: int) -> None:
        n = mb * (1 << 20) // 4 // 3
        self.state = {name: torch.randn(n) for name in ("param", "exp_avg", "exp_avg_sq")}

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state, "steps": 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = state["state"]


def _calibrate(step_s: float) -> int:
    """Matmuls of 512² for about `step_s` seconds."""
    a = torch.randn(512, 512)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.2:
        a @ a
        n += 1
    return max(1, int(n * step_s / 0.2))


def run(mode: str, mb: int, every: int, steps: int, folder: Path, matmuls: int) -> dict[str, Any]:
    """`steps` steps with a checkpoint every `every`; the step thread's seconds in `trained()` per checkpoint."""
    shutil.rmtree(folder, ignore_errors=True)
    learner = _Learner(mb)
    ckpt = Checkpointer(CheckpointStore(folder, keep=2), learner, every=every, ack=lambda b: None,
                        background=mode == "background")
    a = torch.randn(512, 512)
    held, t_start = [], time.perf_counter()
    for step in range(steps):
        for _ in range(matmuls):
            a @ a
        learner.state["param"].add_(1e-3)
        t0 = time.perf_counter()
        if ckpt.trained(step, {}, [step]):
            held.append(time.perf_counter() - t0)
    ckpt.checkpoint()
    ckpt.close()
    wall = time.perf_counter() - t_start
    shutil.rmtree(folder, ignore_errors=True)
    return {"mode": mode, "checkpoints": len(held), "held_s_mean": sum(held) / len(held), "held_s_max": max(held),
            "held_s": held, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--step-s", type=float, default=0.5)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench-ckpt-", dir=Path(__file__).resolve().parent))
    matmuls = _calibrate(args.step_s)
    rows = []
    try:
        for mode in ("inline", "background", "inline", "background"):  # interleaved: the machine's load drifts
            r = run(mode, args.mb, args.every, args.steps, base / mode, matmuls)
            rows.append(r)
            print(f"{mode:>10}: {r['checkpoints']} checkpoints of {args.mb} MB, step thread held "
                  f"{r['held_s_mean'] * 1e3:.0f} ms mean, {r['held_s_max'] * 1e3:.0f} ms max; "
                  f"{args.steps} steps in {r['wall_s']:.2f} s", flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
