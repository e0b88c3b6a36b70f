"""What a run leaves in its output folder: metrics, evaluations, samples, checkpoints.

`afd sync` and the async student learner both write through `RunOutputs`, so
their folders compare file for file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import torch

from afd_async.checkpoint import save_module
from afd_async.config.convert import to_dict
from afd_async.config.prompts import eval_prompts
from afd_async.config.root import RootConfig
from afd_async.train.evaluate import EvalResult, PhysicsEvaluator
from afd_async.train.report import PLOT_KEYS, MetricLog, plot_metrics, read_metrics, write_grid
from afd_async.train.student_update import StudentUpdater
from afd_async.train.teacher_source import make_teacher_source


def _float(v: Any) -> Optional[float]:
    return None if v is None else float(v)


class RunOutputs:
    def __init__(self, cfg: RootConfig, text: Any) -> None:
        self.cfg = cfg
        self.out = Path(cfg.train.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        self.teacher = make_teacher_source(cfg)
        self.eval_prompts = eval_prompts(cfg)[: cfg.train.eval_prompts]
        prompts = [p.prompt for p in self.eval_prompts]
        self.evaluator = PhysicsEvaluator(
            prompts=prompts, text=text.encode(prompts), teacher=self.teacher, timesteps=cfg.student.timesteps,
            shift=cfg.student.shift, num_frames=cfg.student.num_frames, fps=cfg.student.fps,
        )
        self.log = MetricLog(self.out / "metrics.jsonl")
        self.t0 = time.monotonic()
        self.steps_at_start = 0  # a resumed learner's steps before this invocation (its own figures exclude them)
        self.start_result: Optional[EvalResult] = None
        self.base_videos: Optional[torch.Tensor] = None

    def policy(self, updater: StudentUpdater) -> torch.nn.Module:
        """The policy evaluations and samples roll out (`train.eval_policy`)."""
        return updater.ema.module if self.cfg.train.eval_policy == "ema" else updater.old

    def start(self, updater: StudentUpdater, *, initial: Optional[torch.nn.Module] = None) -> None:
        """The start evaluation: of `updater`'s eval policy, or of `initial` at step 0 (a resumed learner's
        start is θ_ref, the student before any training: its θ_old and EMA have moved on)."""
        policy = initial if initial is not None else self.policy(updater)
        self.start_result, self.base_videos = self.evaluator.evaluate(policy)
        self.log.write({"step": 0 if initial is not None else updater.steps, "phase": "eval", **self.start_result.as_dict()})
        self.steps_at_start = updater.steps
        self.t0 = time.monotonic()

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self.log.write({"step": step, "phase": "train", "wall_s": round(time.monotonic() - self.t0, 3), **metrics})

    def evaluate(self, updater: StudentUpdater) -> EvalResult:
        result, _ = self.evaluator.evaluate(self.policy(updater))
        self.log.write({"step": updater.steps, "phase": "eval", **result.as_dict()})
        return result

    def finish(self, updater: StudentUpdater, d: torch.nn.Module, *, d_version: int, mode: str,
               extra: dict[str, Any]) -> tuple[dict[str, Any], EvalResult]:
        """Final evaluation and every file; returns (summary, final evaluation)."""
        seconds = time.monotonic() - self.t0
        this_run = updater.steps - self.steps_at_start
        final, final_videos = self.evaluator.evaluate(self.policy(updater))
        self.log.write({"step": updater.steps, "phase": "eval", **final.as_dict()})
        self.log.close()
        records = read_metrics(self.out / "metrics.jsonl")
        d_accs = [r["d_acc"] for r in records if "d_acc" in r]
        n = min(4, len(self.eval_prompts))
        teacher = self.teacher.batch([p.prompt for p in self.eval_prompts[:n]], [0] * n)
        assert self.base_videos is not None and self.start_result is not None
        # tiny clips are blown up to be seen and written as GIF too; real-size ones (480x832) stay as they are,
        # MP4 only (x4 would be GBs of frames, a GIF minutes of palette quantisation)
        small = self.cfg.student.height <= 128
        write_grid([teacher, self.base_videos[:n], final_videos[:n]], self.cfg.student.fps, self.out / "samples",
                   upscale=max(1, 128 // self.cfg.student.height), gif=small)
        plot_metrics(records, PLOT_KEYS, self.out / "metrics.png")
        save_module(self.out / "student_final.safetensors", updater.old, meta={"version": updater.version})
        save_module(self.out / "student_ema.safetensors", updater.ema.module, meta={"version": updater.version})
        save_module(self.out / "discriminator_final.safetensors", d, meta={"version": d_version})
        summary = {
            "algo": self.cfg.algo.name, "mode": mode, "staleness": self.cfg.replay.staleness if mode == "async" else None,
            # `steps`: the run's total; `steps_this_run`, `seconds` and `pairs_per_s`: this invocation's own (a resumed
            # learner started at `resumed_at`), never another invocation's
            "steps": updater.steps, "resumed_at": self.steps_at_start, "steps_this_run": this_run,
            "seconds": round(seconds, 1), "eval_policy": self.cfg.train.eval_policy,
            "pairs_per_s": round(this_run * self.cfg.train.batch_size / seconds, 3) if this_run and seconds > 0 else None,
            "final_d_acc": d_accs[-1] if d_accs else _float(extra.get("status", {}).get("d_acc")), "start": self.start_result.as_dict(""),
            "final": final.as_dict(""), "eval_prompts": [p.prompt for p in self.eval_prompts[:n]],
            "samples_columns": ["teacher", "student (start)", "student (final)"], **extra,
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary, final
