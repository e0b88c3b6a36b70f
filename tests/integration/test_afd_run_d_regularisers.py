"""The staleness-0 oracle with every D-side option on at once (one `afd run`, one sync reference: each is a
minute of the suite): instance noise, accuracy-gated D steps, temporal negatives in L_D and D probes every 2 D
steps. Noise and negatives are drawn from per-step seeds, a skipped D step still counts as a D version, and
probing draws nothing the training draws, so `afd run` at k = 0 still computes `afd sync`'s losses at the
standard tolerance, and its D learner writes the sync loop's probe records.

The tiny D's head bias, which no loss can see (BT compares two scores), is frozen: with negatives its
gradient was a rounded sum of several terms that Adam turned into ±lr_d steps, and `score_mean` drifted
apart between the two paths (issue 15.2).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from afd_async.testing.oracle import assert_matches_sync, async_train_steps, sync_reference
from afd_async.train.report import read_metrics

pytestmark = pytest.mark.slow

# max accuracy 0.5 on 2-pair batches: every batch D ranks fully right (acc 1.0) is skipped
SMOKE = ["experiment=smoke", "replay.staleness=0", "train.sync_teacher_codec=true", "train.eval_prompts=2",
         "algo.d_instance_noise=0.1", "algo.d_max_accuracy=0.5", "algo.d_r1_gamma=1.0",
         "train.d_probe_every=2", "train.d_probe_clips=4", "algo.d_temporal_negatives=true",
         "algo.d_negative_kinds=[shuffled,reversed,frame_drop,prompt_swap]"]


def _probes(path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "d_probe_s"} for r in read_metrics(path) if r.get("phase") == "d_probe"]


def test_regularised_probed_d_keeps_the_staleness_zero_oracle(tmp_path) -> None:
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
    async_probes, sync_probes = _probes(out / "metrics.jsonl"), _probes(out / "sync" / "metrics.jsonl")
    assert [r["d_step"] for r in async_probes] == [2, 4, 6]  # every 2 D step calls; the last one is the final D
    assert async_probes == sync_probes
    # ρ(D, −true error) of the student clips (issue 15.2): the D learner logs it as the sync loop does
    assert all(r["d_probe_rho_physics_clips"] == 2 * 2 for r in async_probes), async_probes  # 2 calls x 2 clips
