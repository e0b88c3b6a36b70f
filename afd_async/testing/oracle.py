"""The staleness-0 oracle: what `afd sync` computes for a run's config, and the comparison with `afd run`.

Tests of the async system (one rank, several ranks, D regularisers) check the same
claim: at k = 0 every student step's losses equal the synchronous loop's on the same
seeds. The sync reference renders its own teacher clips and, with
`train.sync_teacher_codec=true`, passes them through the same MP4 encode/decode as the
local teacher server and actor; that is exact because `encode_mp4` is repeatable (libx264's
mbtree, which was not, is off). It reads the run's text features (`text.cache_dir`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from afd_async.config import load_config
from afd_async.train.report import read_metrics
from afd_async.train.sync_loop import SyncLoop

COMPARED = ("student_loss", "nft_loss", "score_mean", "w_min", "w_max")


def async_train_steps(out: Path) -> list[dict[str, Any]]:
    """The student learner's per-step metrics of the run written to `out`."""
    return [r for r in read_metrics(out / "metrics.jsonl") if r.get("phase") == "train"]


def sync_reference(overrides: Sequence[str], out: Path) -> tuple[SyncLoop, list[dict[str, float]]]:
    """`afd sync` with `overrides` on the async run's caches: the loop (for its counters) and its step metrics."""
    cfg = load_config([*overrides, f"train.output_dir={out / 'sync'}", f"text.cache_dir={out / 'text_cache'}"])
    loop = SyncLoop(cfg)
    loop.warmup_d()
    return loop, [loop.step() for _ in range(cfg.train.steps)]


def assert_matches_sync(async_steps: Sequence[dict[str, Any]], sync_steps: Sequence[dict[str, float]], *,
                        rel_tol: float = 1e-4, abs_tol: float = 1e-5) -> None:
    """Every compared metric of every step agrees; the message names the step and the key."""
    assert len(async_steps) == len(sync_steps), (len(async_steps), len(sync_steps))
    for a, s in zip(async_steps, sync_steps):
        for key in COMPARED:
            assert math.isclose(a[key], s[key], rel_tol=rel_tol, abs_tol=abs_tol), (a["step"], key, a[key], s[key])
