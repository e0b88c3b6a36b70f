"""The plumbing at its physical limits (issue 19), every figure against a bound measured in the same run.

    python benchmarks/plumbing.py            # ~10 minutes on 2 cores; writes benchmarks/results/plumbing.json
    python benchmarks/plumbing.py --only weights,busy --out /tmp/p.json   # some parts (a change's own figures)

| figure | bound it is divided by (same run) | goal |
| --- | --- | --- |
| teacher quota used, N = 1 / 4 / 16 actors on one account | the account's capacity over the window | ≥ 99 %, 0 throttled |
| replay pairs/s | `redis-benchmark` SET + GET of the same 100 KB payload, same server | ≥ 0.8 |
| weight sync of 1 GB to 1 and 8 actors | memcpy of the same bytes (time ratio: lower is better) | ≤ 2× |
| ZeroMQ feed GB/s | raw PUSH/PULL of the same frames | ≥ 2 GB/s |
| student learner busy once warm, k = 2 (k = 1 and D staleness 1 beside it) | its warm wall time | ≥ 0.95 |

Each part lives in its own benchmark (`bench_teacher_quota`, `bench_replay`, `bench_weights`,
`bench_feed`, `bench_async_vs_sync`), which says how it measures and prints its own detail; this
script runs them one after the other (never two at once: they would share the 2 cores) and keeps
their full records under `detail` in the JSON. A part that fails is recorded with its error and the
others still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_async_vs_sync  # noqa: E402  (sibling benchmarks: each measures one figure)
import bench_feed  # noqa: E402
import bench_replay  # noqa: E402
import bench_teacher_quota  # noqa: E402
import bench_weights  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "plumbing.json"
QUOTA_ACTORS = (1, 4, 16)
PARTS = ("quota", "replay", "weights", "feed", "busy")  # `--only` names (busy: the three learner_busy rows)
GOALS = {"quota_used": 0.99, "replay_ratio": 0.8, "weights_ratio": 2.0, "feed_gb_per_s": 2.0, "learner_busy": 0.95}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_parts(quick: bool, only: frozenset[str] = frozenset(PARTS)) -> dict[str, Any]:
    """Every part in `only`, in turn; returns the issue's record plus each part's own under `detail` (a part
    not run reads as not measured: None)."""
    scale = 0.25 if quick else 1.0
    detail: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def part(name: str, fn: Callable[[], Any]) -> Any:
        group = next(p for p in PARTS if name.startswith(p) or (p == "busy" and name.startswith("learner_busy")))
        if group not in only:
            return None
        t0 = time.perf_counter()
        print(f"[plumbing] {name} ...", flush=True)
        try:
            detail[name] = fn()
        except Exception:  # noqa: BLE001 - one broken part must not hide the others' figures
            errors[name] = traceback.format_exc(limit=4)
            print(errors[name], flush=True)
            detail[name] = None
        print(f"[plumbing] {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        return detail[name]

    quota = {str(n): part(f"quota_{n}", lambda n=n: bench_teacher_quota.measure_quota(
        actors=n, seconds=30 * scale, callbacks=True)) for n in QUOTA_ACTORS}
    replay = part("replay", lambda: bench_replay.measure(seconds=30 * scale))
    weights = part("weights", lambda: bench_weights.measure(gb=1.0 if not quick else 0.25, actors=[1, 8]))
    feed = part("feed", lambda: bench_feed.measure(seconds=40 * scale))
    steps = 20 if quick else 40
    busy = part("learner_busy", lambda: bench_async_vs_sync.learner_busy(k=2, steps=steps))
    part("learner_busy_k1", lambda: bench_async_vs_sync.learner_busy(k=1, steps=steps))
    part("learner_busy_k2_d_staleness1", lambda: bench_async_vs_sync.learner_busy(k=2, steps=steps, d_staleness=1))

    def total(key: str) -> int | None:
        vals = [q.get(key) for q in quota.values() if q]
        return None if not vals or None in vals else int(sum(vals))

    return {
        "commit": _commit(), "date": time.strftime("%Y-%m-%d"), "quick": quick, "parts": sorted(only),
        "quota_used": {n: (q or {}).get("quota_used") for n, q in quota.items()},
        "throttled": total("throttled"), "lost": total("lost"), "duplicates": total("duplicates"),
        "replay_ratio": (replay or {}).get("replay_ratio"),
        "weights_ratio": (weights or {}).get("weights_ratio", {"1": None, "8": None}),
        "feed_ratio": (feed or {}).get("feed_ratio"), "feed_gb_per_s": (feed or {}).get("feed_gb_per_s"),
        "learner_busy": (busy or {}).get("student_busy"),  # k = 2, default D staleness 0; others under detail
        "goals": GOALS, "errors": errors, "detail": detail,
    }


def bounds(rec: dict[str, Any]) -> list[str]:
    """What holds each figure back, from the same run's own measurements (printed under the table)."""
    d, out = rec["detail"], []
    rp = d.get("replay")
    if rp:
        out.append(f"replay: bound {rp['baseline_pairs_per_s']:.0f} pairs/s (redis-benchmark SET+GET); the C client on "
                   f"the stream commands reaches {rp['stream_c_pairs_per_s'] / rp['baseline_pairs_per_s']:.2f} of it, a "
                   f"bare Python loop (no codec) {rp['raw_py_pairs_per_s'] / rp['baseline_pairs_per_s']:.2f}, ours "
                   f"{rp['replay_ratio']:.2f}; our µs per pair: " +
                   ", ".join(f"{k} {v:.0f}" for k, v in rp["ours_us_per_pair"].items()))
    w = d.get("weights")
    if w:
        for row in w["rows"]:
            if "skipped" in row or not row["shm"]:
                continue
            last = row["rounds"][-1]
            out.append(f"weights, {row['actors']} actor(s) ({'steady' if row['steady'] else 'one cold round: memory'}): "
                       f"sync {last['sync_s']:.2f} s (the learner's publish {last['publish_s']:.2f} s of it: copy, hash and "
                       f"NaN/Inf check into shared memory, while the actor copies and hashes each chunk as it lands) vs "
                       f"one memcpy {row['bound_s']:.2f} s")
    for key, label in (("learner_busy", "k=2"), ("learner_busy_k1", "k=1"), ("learner_busy_k2_d_staleness1", "k=2, D staleness 1")):
        b = d.get(key)
        if b:
            parts = ", ".join(f"{k} {v:.3f}" for k, v in sorted(b["breakdown"].items(), key=lambda kv: -kv[1]))
            out.append(f"learner busy {label}: {b['student_busy']:.3f} ({parts})")
            cpu = b.get("cpu") or {}
            if cpu:
                out.append(f"  CPU over {cpu['window_s']:.0f} s of it: the roles used {cpu['total_cores']:.2f} of "
                           f"{cpu['cpus']} cores (D learner {cpu['cores'].get('d-learner', 0):.2f}, student learner "
                           f"{cpu['cores'].get('student-learner', 0):.2f}); the student learner's main thread ran "
                           f"{cpu['student_main']['on_cpu']:.2f} of the time and waited for a CPU "
                           f"{cpu['student_main']['runq']:.2f}")
    return out


def table(rec: dict[str, Any]) -> str:
    """The issue's figures (of the parts that ran), each beside its goal and whether it is met."""
    def fmt(v: Any, pct: bool = False) -> str:
        return "—" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.2f}")

    ran = set(rec.get("parts", PARTS))
    rows: list[tuple[str, str, str, bool]] = []
    if "quota" in ran:
        rows += [(f"quota used, N = {n}", fmt(v, True), "≥ 99%", v is not None and v >= GOALS["quota_used"])
                 for n, v in rec["quota_used"].items()]
        rows.append(("throttled / lost / duplicates", f"{rec['throttled']} / {rec['lost']} / {rec['duplicates']}",
                     "0 / 0 / 0", rec["throttled"] == 0 and rec["lost"] == 0 and rec["duplicates"] == 0))
    if "replay" in ran:
        rows.append(("replay ÷ redis-benchmark", fmt(rec["replay_ratio"]), "≥ 0.8",
                     rec["replay_ratio"] is not None and rec["replay_ratio"] >= GOALS["replay_ratio"]))
    if "weights" in ran:
        for n, v in (rec["weights_ratio"] or {}).items():
            rows.append((f"weight sync 1 GB, {n} actor(s) ÷ memcpy", fmt(v), "≤ 2×",
                         v is not None and v <= GOALS["weights_ratio"]))
    if "feed" in ran:
        rows.append(("feed GB/s (÷ raw PUSH/PULL)", f"{fmt(rec['feed_gb_per_s'])} ({fmt(rec['feed_ratio'])})",
                     "≥ 2 GB/s", rec["feed_gb_per_s"] is not None and rec["feed_gb_per_s"] >= GOALS["feed_gb_per_s"]))
    if "busy" in ran:
        busy = {"k = 2": rec["learner_busy"]}
        for key, label in (("learner_busy_k1", "k = 1"), ("learner_busy_k2_d_staleness1", "k = 2, D staleness 1")):
            busy[label] = (rec["detail"].get(key) or {}).get("student_busy")
        for label, v in busy.items():
            rows.append((f"student learner busy, {label}", fmt(v, True), "≥ 95%",
                         v is not None and v >= GOALS["learner_busy"]))
    w = max(len(r[0]) for r in rows)
    lines = [f"{'figure':<{w}}  {'measured':>14}  {'goal':>10}  met"]
    lines += [f"{name:<{w}}  {val:>14}  {goal:>10}  {'yes' if ok else 'NO'}" for name, val, goal, ok in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--quick", action="store_true", help="a quarter of each part's time (wiring check; not a result)")
    ap.add_argument("--only", default=",".join(PARTS),
                    help=f"comma-separated parts to run, of {','.join(PARTS)} (default all); the others read as —")
    args = ap.parse_args()
    only = frozenset(p.strip() for p in args.only.split(",") if p.strip())
    if not only or only - set(PARTS):
        ap.error(f"--only takes parts of {', '.join(PARTS)}; got {args.only!r}")
    if only != set(PARTS) and args.out == RESULT:
        ap.error("a partial run (--only) would overwrite the full record: name another --out")
    t0 = time.perf_counter()
    rec = run_parts(args.quick, only)
    rec["wall_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rec, indent=1, default=str))
    print(table(rec))
    print("\n".join(bounds(rec)))
    print(f"wrote {args.out} in {rec['wall_s']:.0f} s")
    if rec["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
