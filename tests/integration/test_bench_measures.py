"""The replay and feed benchmarks' `measure()` and the busy rows' CPU sampler (what `benchmarks/plumbing.py` reads): keys,
sane values, short runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    """A benchmark script as a module (they are scripts, not a package); spawned children import it by name."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_replay_measure_reports_ratio_against_redis_benchmark() -> None:
    m = _load("bench_replay").measure(seconds=2.0, repeats=1)
    for key in ("replay_ratio", "pairs_per_s", "baseline_pairs_per_s", "set_rps", "get_rps", "raw_py_pairs_per_s",
                "stream_c_pairs_per_s"):
        assert m[key] > 0, key
    assert m["replay_ratio"] == pytest.approx(m["pairs_per_s"] / m["baseline_pairs_per_s"])
    assert "-P 16" in m["baseline_command"] and "-d 102400" in m["baseline_command"]
    assert set(m["ours_us_per_pair"]) >= {"write", "read", "ack"} and set(m["codec_us_per_pair"]) == {"encode", "decode"}


def test_feed_measure_reports_ratio_against_raw_push_pull() -> None:
    m = _load("bench_feed").measure(seconds=2.0, repeats=1, sizes_mb=(2,))
    assert m["feed_gb_per_s"] > 0 and m["raw_gb_per_s"] > 0
    assert m["feed_ratio"] == pytest.approx(m["feed_gb_per_s"] / m["raw_gb_per_s"])
    assert [(r["batch_mb"], r["transport"]) for r in m["rows"]] == [(2, "tcp")]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux /proc")
def test_role_cpu_counts_a_busy_child_role_and_its_main_thread() -> None:
    """`role_cpu.RoleCpu` (under `learner_busy`'s rows) on a real child process named as a student learner, spinning
    for a second: its cores and its main thread's time on a CPU are there, and no more than the wall allows."""
    import os
    import subprocess

    role_cpu = _load("role_cpu")
    spin = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1.5: pass"
    with role_cpu.RoleCpu(os.getpid(), period_s=0.05) as cpu:
        subprocess.run([sys.executable, "-c", spin, "afd_async.cli", "student-learner"], check=True)
    s = cpu.summary(lo=0.0, hi=1.0)
    assert s["cpus"] == os.cpu_count() and s["window_s"] > 0.5
    assert 0.1 < s["cores"]["student-learner"] <= 1.1
    main = s["student_main"]
    assert 0.1 < main["on_cpu"] <= 1.1 and main["runq"] >= 0 and main["on_cpu"] + main["runq"] <= 1.2
    assert role_cpu.RoleCpu(os.getpid()).summary() == {}  # never sampled: nothing to say
