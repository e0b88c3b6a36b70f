"""The staleness-0 oracle with D's regularisers on: instance noise is drawn from per-step seeds and a
skipped D step still counts as a D version, so `afd run` at k = 0 still computes `afd sync`'s losses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from afd_async.testing.oracle import assert_matches_sync, async_train_steps, sync_reference

pytestmark = pytest.mark.slow

# max accuracy 0.5 on 2-pair batches: every batch D ranks fully right (acc 1.0) is skipped
SMOKE = ["experiment=smoke", "replay.staleness=0", "train.sync_teacher_codec=true", "train.eval_prompts=2",
         "algo.d_instance_noise=0.1", "algo.d_max_accuracy=0.5"]


def test_regularised_d_keeps_the_staleness_zero_oracle(tmp_path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "afd_async.cli", "run", *SMOKE, f"train.output_dir={out}"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = json.loads((out / "summary.json").read_text())["status"]
    assert int(status["d_version"]) == 2 + 4  # skipped steps count: the student never waited forever
    async_steps = async_train_steps(out)
    assert [r["step"] for r in async_steps] == [1, 2, 3, 4]
    loop, sync_steps = sync_reference(SMOKE, out)
    assert loop.d_upd.calls == 2 + 4 and loop.d_upd.skipped > 0  # the skip path was exercised
    assert_matches_sync(async_steps, sync_steps)
