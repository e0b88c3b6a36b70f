"""The figures of one `afd run` (issue 20.4): s/step, pairs/s, each role's busy fraction and GPU peak,
the θ_old sync time and where a student step's time goes, read from the run's own records.

    python3 benchmarks/wan_afd_report.py <train.output_dir> --out wan_1_3b_afd_run.json

Sources: `metrics.jsonl` (one record per student step: wall clock, step time and its parts) and the run's
status hash (busy fractions, GPU peaks, weight-sync sums, pair counts), taken from `summary.json` when the
run finished, else read back from the run's Redis append-only file: a run cut off by its deadline still
reports what it did. Figures that a run did not record (GPU peaks on a CPU run) are absent, never zero.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Optional

from afd_async.store.keys import RunKeys
from afd_async.store.redis_server import RedisServer
from afd_async.train.report import read_metrics

ROLES = ("student-actor", "d-learner", "student-learner")
BUSY_FIELDS = {"student-actor": "actor_busy_ratio", "d-learner": "d_busy_ratio", "student-learner": "student_busy_ratio"}
# the parts of a student learner step, as `metrics.jsonl` records them (runtime/student_learner_role.py)
PROFILE_KEYS = ("batch_wait_s", "time_d_wait_s", "time_step_s", "time_publish_s", "checkpoint_s")


def run_status(run_dir: Path) -> dict[str, str]:
    """The run's status hash: from `summary.json`, or replayed from its Redis AOF in a private redis-server."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        return {k: str(v) for k, v in json.loads(summary.read_text())["status"].items()}
    if not (run_dir / "redis").is_dir():
        return {}
    # replaying a 1.3B run's AOF (every pair's clips: GBs) takes longer than a fresh server's start
    with RedisServer(data_dir=str(run_dir / "redis"), appendonly=True).start(timeout_s=180) as srv:
        import redis

        r = redis.Redis(**srv.client_kwargs())
        return {k.decode(): v.decode() for k, v in r.hgetall(RunKeys().status).items()}


def _num(status: dict[str, str], key: str) -> Optional[float]:
    return float(status[key]) if key in status else None


def _median(xs: list[float]) -> Optional[float]:
    return round(statistics.median(xs), 4) if xs else None


def report(run_dir: str | Path, *, batch_size: int) -> dict[str, Any]:
    """Figures of the run in `run_dir` (its `train.output_dir`); `batch_size` is the run's `train.batch_size`.

    `s_per_step` is the median wall time between consecutive student steps (steady state: the first
    step waits for start-up and the D warm-up); `pairs_per_s` follows from it.
    """
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    train = [r for r in records if r.get("phase") == "train"]
    status = run_status(run_dir)
    walls = [r["wall_s"] for r in train]
    gaps = [b - a for a, b in zip(walls, walls[1:])]
    s_per_step = _median(gaps)
    syncs, groups = _num(status, "actor_weight_syncs"), _num(status, "actor_groups")
    publish = _median([r["time_publish_s"] for r in train if "time_publish_s" in r])
    load = round(_num(status, "actor_weight_sync_s") / syncs, 4) if syncs else None
    out: dict[str, Any] = {
        "steps": max((r["step"] for r in train), default=0),
        "s_per_step": s_per_step,
        "pairs_per_s": round(batch_size / s_per_step, 4) if s_per_step else None,
        "busy": {role: _num(status, f) for role, f in BUSY_FIELDS.items() if f in status},
        "busy_breakdown": {role: json.loads(status[f]) for role, f in
                           (("student-learner", "student_busy_breakdown"), ("d-learner", "d_busy_breakdown"))
                           if f in status},
        "gpu_mem_gib": {role: _num(status, f"gpu_peak_gib:{role}") for role in ROLES if f"gpu_peak_gib:{role}" in status},
        # θ_old from the learner's snapshot to the actor's policy: publish (snapshot, hash, announce) + fetch and load
        "weight_sync_s": round(publish + load, 4) if publish is not None and load is not None else None,
        "weight_sync_parts_s": {"publish_s": publish, "actor_fetch_load_s": load, "actor_syncs": int(syncs or 0)},
        # a student step's parts (medians), and the actor's mean group: rollout + decode + pair write
        "profile_s": {**{k: _median([r[k] for r in train if k in r]) for k in PROFILE_KEYS},
                      "actor_group_s": round(_num(status, "actor_group_s") / groups, 4) if groups else None},
        "pairs_written": int(_num(status, "pairs_written") or 0),
        "pairs_dropped_stale": int(_num(status, "pairs_dropped_stale") or 0),
        "finished": (run_dir / "summary.json").is_file(),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="the run's train.output_dir")
    ap.add_argument("--out", required=True, help="where to write the JSON")
    ap.add_argument("--batch-size", type=int, default=1, help="the run's train.batch_size")
    ap.add_argument("--extra", default="{}", help="JSON merged into the result (device, wall times of the call)")
    args = ap.parse_args()
    res = {**report(args.run_dir, batch_size=args.batch_size), **json.loads(args.extra)}
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
