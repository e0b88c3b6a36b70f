"""`afd run` end to end (every role a process, real Redis, ZeroMQ, HTTP), and the staleness-0 oracle:
at k = 0 the async system computes the synchronous loop's losses on the same seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from afd_async.testing.oracle import assert_matches_sync, async_train_steps, sync_reference
from afd_async.train.report import read_metrics

pytestmark = pytest.mark.slow

SMOKE = ["experiment=smoke", "replay.staleness=0", "train.sync_teacher_codec=true", "train.eval_prompts=2",
         "train.d_probe_every=3"]


@pytest.fixture(scope="module")
def async_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("afd_run")
    proc = subprocess.run(
        [sys.executable, "-m", "afd_async.cli", "run", *SMOKE, f"train.output_dir={out}"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_run_writes_its_outputs(async_run):
    out, proc = async_run
    for name in ("samples.mp4", "samples.gif", "metrics.png", "metrics.jsonl", "summary.json",
                 "student_final.safetensors", "discriminator_final.safetensors"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["mode"] == "async" and summary["staleness"] == 0
    status = summary["status"]
    # 2 warm-up groups + 4 training groups of 2 pairs, all written, none dropped at k = 0 with admission
    assert int(status["pairs_written"]) == 12
    assert int(status.get("pairs_dropped_stale", 0)) == 0
    assert int(status["d_version"]) == 2 + 4
    assert "eval physics score" in proc.stdout
    for when in ("start", "final"):  # the primary score with its CI over prompts, and the teacher's floor
        ev = summary[when]
        assert ev["physics_score_ci_low"] <= ev["physics_score"] <= ev["physics_score_ci_high"]
        assert 0.0 <= ev["teacher_physics_score"] < 0.5
    assert summary["eval_policy"] == "ema"


def test_staleness_zero_reproduces_the_sync_loop(async_run):
    out, _ = async_run
    async_steps = async_train_steps(out)
    assert [r["step"] for r in async_steps] == [1, 2, 3, 4]
    # every rollout used exactly the newest policy (k = 0)
    assert all(r["staleness_max"] == 0 for r in async_steps)
    _, sync_steps = sync_reference(SMOKE, out)
    assert_matches_sync(async_steps, sync_steps)
    # the D learner probes on a thread, on copies of D (runtime/background_probes.py): the sync loop's records
    probes = {p: [r for r in read_metrics(p) if r.get("phase") == "d_probe"]
              for p in (out / "metrics.jsonl", out / "sync" / "metrics.jsonl")}
    async_probes, sync_probes = probes.values()
    assert [r["d_step"] for r in async_probes] == [r["d_step"] for r in sync_probes] == [3, 6]
    for a, s in zip(async_probes, sync_probes):
        assert a.keys() == s.keys()
        for key in a.keys() - {"d_probe_s"}:
            want = pytest.approx(s[key], rel=1e-4, abs=1e-5) if isinstance(s[key], float) else s[key]
            assert a[key] == want, (a["d_step"], key, a[key], s[key])
