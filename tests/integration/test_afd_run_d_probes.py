"""The staleness-0 oracle with D probes every 2 D steps and temporal negatives in L_D (issue 15.2): probing
draws nothing the training draws and the negatives come from per-step seeds, so `afd run` at k = 0 still
computes `afd sync`'s losses, and its D learner writes the sync loop's probe records.

The tiny D's head bias, which no loss can see (BT compares two scores), is frozen: with negatives its
gradient was a rounded sum of several terms that Adam turned into ±lr_d steps, and `score_mean` drifted
apart between the two paths. Now every compared quantity agrees at the usual tolerance.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from afd_async.testing.oracle import COMPARED, async_train_steps, sync_reference
from afd_async.train.report import read_metrics

pytestmark = pytest.mark.slow

SMOKE = ["experiment=smoke", "replay.staleness=0", "train.sync_teacher_codec=true", "train.eval_prompts=2",
         "train.d_probe_every=2", "train.d_probe_clips=4", "algo.d_temporal_negatives=true",
         "algo.d_negative_kinds=[shuffled,reversed,frame_drop,prompt_swap]", "algo.d_instance_noise=0.1"]


def _probes(path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "d_probe_s"} for r in read_metrics(path) if r.get("phase") == "d_probe"]


def test_probes_and_temporal_negatives_keep_the_staleness_zero_oracle(tmp_path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "afd_async.cli", "run", *SMOKE, f"train.output_dir={out}"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    async_steps = async_train_steps(out)
    assert [r["step"] for r in async_steps] == [1, 2, 3, 4]
    loop, sync_steps = sync_reference(SMOKE, out)
    assert loop.d_upd.calls == 2 + 4
    for a, s in zip(async_steps, sync_steps, strict=True):
        for key in COMPARED:
            assert math.isclose(a[key], s[key], rel_tol=1e-4, abs_tol=1e-5), (a["step"], key, a[key], s[key])
    async_probes, sync_probes = _probes(out / "metrics.jsonl"), _probes(out / "sync" / "metrics.jsonl")
    assert [r["d_step"] for r in async_probes] == [2, 4, 6]  # every 2 D step calls; the last one is the final D
    assert async_probes == sync_probes
