"""Checks of the compose smoke test, read from Prometheus's HTTP API (stdlib only: runs on the host).

    python3 tests/compose/prom_checks.py --prometheus http://127.0.0.1:19090 flow
    python3 tests/compose/prom_checks.py ... quota --teacher-actors 3
    python3 tests/compose/prom_checks.py ... dashboard

Why through Prometheus: a value seen there proves the role exports it *and* the compose scrape config
reaches the role, which is what the Grafana dashboard depends on.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

ROLES = ("teacher-server", "teacher-actor", "student-actor", "feeder", "d-learner", "student-learner")
DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "dashboards" / "afd.json"


class Prom:
    """A tiny Prometheus API client: instant queries, with every wait bounded."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def query(self, expr: str) -> list[dict]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {expr}: {body}")
        return body["data"]["result"]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else math.nan


def wait(what: str, pred: Callable[[], object], timeout_s: float, every_s: float = 5.0) -> object:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                print(f"ok: {what} ({last})", flush=True)
                return last
        except (OSError, urllib.error.URLError, RuntimeError, ValueError) as e:
            last = e
        time.sleep(every_s)
    raise SystemExit(f"FAIL: {what}: not reached in {timeout_s:.0f}s (last: {last!r})")


def check_flow(p: Prom, timeout_s: float) -> None:
    wait("prometheus ready", lambda: urllib.request.urlopen(f"{p.base}/-/ready", timeout=5).status == 200, timeout_s)
    for role in ROLES:
        wait(f"{role} scraped (up == 1)", lambda r=role: p.value(f'max(up{{job="{r}"}})') == 1, timeout_s)
    wait("teacher clips cached", lambda: p.value("sum(afd_teacher_actor_clips_total)") > 0, timeout_s)
    wait("pairs written", lambda: p.value("sum(afd_replay_pairs_written_total)") > 0, timeout_s)
    wait("pairs read by the feeder", lambda: p.value("sum(afd_replay_pairs_read_total)") > 0, timeout_s)
    for learner in ("d_learner", "student_learner"):
        series = f"sum(afd_{learner}_steps_total)"
        first = wait(f"{learner} steps > 0", lambda s=series: (v := p.value(s)) > 0 and v, timeout_s)
        wait(f"{learner} steps advance past {first}", lambda s=series, f=first: (v := p.value(s)) > f and v, timeout_s)
    wait("weights reach the student actors", lambda: p.value("max(afd_student_actor_policy_version)") >= 1, timeout_s)


def check_quota(p: Prom, timeout_s: float, actors: int, window_s: int) -> None:
    wait(f"{actors} teacher actors scraped", lambda: p.value('count(up{job="teacher-actor"} == 1)') >= actors, timeout_s)
    wait(f"{actors} teacher actors report", lambda: p.value('count(afd_role_info{role="teacher-actor"})') >= actors,
         timeout_s)
    wait("submissions continue", lambda: p.value('sum(increase(afd_teacher_actor_jobs_total{state="submitted"}[1m]))') > 0,
         timeout_s)
    print(f"observing the quota for {window_s}s with {actors} actors", flush=True)
    time.sleep(window_s)
    w = f"{window_s}s"
    # The configured ceiling, not the adaptive limit: after an AIMD decrease, live leases may exceed the
    # current limit until they finish (the quota only promises leases <= limit at admission).
    limit = p.value("max(afd_quota_in_flight_max)")
    rate_cap = p.value("max(afd_quota_create_limit_per_second)")
    burst = p.value("max(afd_quota_create_burst)")
    peak_server = p.value("max(afd_teacher_server_jobs_running_peak)")
    peak_shared = p.value(f"max_over_time(max(afd_quota_in_flight_jobs)[{w}:1s])")
    peak_sum = p.value(f"max_over_time(sum(afd_teacher_actor_jobs_in_flight)[{w}:1s])")
    created = p.value(f'sum(increase(afd_teacher_server_jobs_total{{state="queued"}}[{w}]))')
    throttled = p.value(f'sum(increase(afd_teacher_server_throttled_total{{reason="concurrency"}}[{w}]))')
    print(json.dumps({"in_flight_max": limit, "create_limit_per_s": rate_cap, "burst": burst, "server_peak": peak_server,
                      "shared_peak": peak_shared, "actors_sum_peak": peak_sum, "created": created,
                      "concurrency_429s": throttled}), flush=True)
    failures = []
    if not limit > 0:
        failures.append("no afd_quota_in_flight_max reported")
    for name, v in (("server peak", peak_server), ("shared in-flight peak", peak_shared), ("sum of actors' in-flight", peak_sum)):
        if v > limit:
            failures.append(f"{name} {v} exceeds the in-flight cap {limit}")
    # GCRA: at most burst + L·rate creates in any window of L seconds (+1: increase() extrapolates).
    if rate_cap > 0 and created > (0 if math.isnan(burst) else burst) + rate_cap * window_s + 1:
        failures.append(f"{created} jobs created in {w}: above burst {burst} + {rate_cap}/s")
    if failures:
        raise SystemExit("FAIL: shared quota: " + "; ".join(failures))
    print("ok: the shared quota held with", actors, "teacher actors", flush=True)


def check_dashboard(p: Prom) -> None:
    dash = json.loads(DASHBOARD.read_text())
    empty = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m")
            if not p.query(expr):  # raises on a PromQL error
                empty.append(f"{panel['title']}: {expr}")
    print(f"ok: every dashboard query parses; {len(empty)} return no data yet (GPU panels do without a GPU)")
    for line in empty:
        print("  empty:", line)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", default="http://127.0.0.1:19090")
    ap.add_argument("--timeout", type=float, default=900)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("flow")
    q = sub.add_parser("quota")
    q.add_argument("--teacher-actors", type=int, default=3)
    q.add_argument("--window", type=int, default=60)
    sub.add_parser("dashboard")
    args = ap.parse_args(argv)
    p = Prom(args.prometheus)
    if args.cmd == "flow":
        check_flow(p, args.timeout)
    elif args.cmd == "quota":
        check_quota(p, args.timeout, args.teacher_actors, args.window)
    else:
        check_dashboard(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
