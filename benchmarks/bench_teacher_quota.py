"""Shared teacher quota vs a naive per-process limiter, with and without completion callbacks.

Run: `python benchmarks/bench_teacher_quota.py [--seconds 20] [--procs 1 4 16] [--callbacks on off]
[--modes shared naive]` (default: the shared quota with callbacks on, N = 1, 4, 16, 20 s windows: about 2 minutes on 2 cores).
`measure_quota(actors, seconds, callbacks)` runs one cell (shared quota) for `benchmarks/plumbing.py`.

Setup per cell: a private redis-server, the local teacher server (this
process, uvicorn thread) set to the account's quota — 600 creates/min, 10 jobs
in flight per key, 2 s render — and N real `TeacherActor` processes popping
from one Redis prompt queue with 12 workers each (a user sizes workers to the
account's in-flight limit). The backend renders a tiny constant clip, so the
numbers measure the quota, not the renderer.

Modes:
- `shared`: every process uses the one `SharedQuota` of the account in Redis.
- `naive`: the baseline users write: each process copies the provider's
  documented limits into its own limiter (600/min, 10 in flight, same code
  with a per-process Redis namespace, no adaptive decrease) and retries 429s
  with exponential backoff, honouring Retry-After.

Callbacks (`--callbacks on`): the server signs a webhook at each job's end
(Standard Webhooks, as Replicate), each actor process runs the callback receiver
(`teacher.callback.enabled=true`) and a job's lease goes back the moment its
callback lands; polling only as the fallback (every 5 s). `off`: polling alone,
at the progress-predicted finish.

Measured over a fixed window after all N processes are up: quota used = the
account's in-flight slot-seconds held by jobs at the server (each job from its
create to its end, clipped to the window) / (max in flight x window), exact,
from the server's job records; creates = creates accepted / the account's
capacity min(rate, in_flight / render) x window (±1 job of window-edge
quantisation, and a job's render overhead past 2 s counts as unused);
occupancy = the server's sampled in-flight count / max; throttled = 429s / create
requests; lost = prompts popped that end neither as a clip, a dead letter nor
back in the queue after SIGTERM; duplicates = accepted jobs − distinct
prompts; p50/p95 = submit → clip cached (from teacher_meta).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RATE, IN_FLIGHT, RENDER_S, WORKERS = 600.0, 10, 2.0, 12
KEY = "sk-bench-" + uuid.uuid4().hex
WEBHOOK_SECRET = "whsec_" + base64.b64encode(uuid.uuid4().bytes * 2).decode()


def tiny_backend(prompt: str, seed: int, params: dict) -> Any:
    import numpy as np

    from afd_async.video.clip import Clip

    frames = np.full((16, 32, 32, 3), (seed * 37 + len(prompt)) % 255, dtype=np.uint8)
    return Clip(frames=frames, fps=8.0)


def worker_overrides(redis_url: str, port: int, mode: str, callbacks: bool = False) -> list[str]:
    o = [f"cluster.redis_url={redis_url}", f"cluster.teacher_server_port={port}", "cluster.metrics_port=0",
         f"teacher.concurrency={WORKERS}", f"teacher.quota.create_rate_per_min={RATE}", "teacher.quota.burst=10",
         f"teacher.quota.max_in_flight={IN_FLIGHT}", "teacher.quota.lease_ttl_s=10", "teacher.quota.acquire_timeout_s=30",
         "teacher.gateway.poll_interval_s=0.1", "teacher.gateway.poll_max_interval_s=0.5",
         "teacher.gateway.retry_initial_s=0.2", "teacher.gateway.retry_max_s=5", "teacher.gateway.drain_timeout_s=5",
         "teacher.gateway.submit_attempts=12", "teacher.source.pop_timeout_s=0.5", "teacher.source.actor_ttl_s=5",
         "teacher.decode.min_source_fraction=0.5"]
    if callbacks:
        o += ["teacher.callback.enabled=true", "teacher.callback.fallback_poll_s=5"]
    if mode == "naive":
        o += [f"teacher.account=naive-{uuid.uuid4().hex[:8]}", "teacher.quota.aimd_decrease=0.999",
              "teacher.quota.aimd_cooldown_s=100000"]
    return o


def run_worker(overrides: list[str]) -> int:
    """One actor process (what `afd teacher-actor` runs, minus metrics)."""
    from afd_async.config import load_config
    from afd_async.config.credentials import load_webhook_secret
    from afd_async.teacher.actor import (TeacherActor, build_gateway, connect_redis, make_callback_receiver,
                                         make_teacher_client)

    cfg = load_config(overrides)

    async def main() -> None:
        r = connect_redis(cfg.cluster.redis_url)
        receiver = make_callback_receiver(cfg, load_webhook_secret())
        client = make_teacher_client(cfg, {"api_key": os.environ["AFD_TEACHER_API_KEY"]},
                                     callback_url=receiver.url if receiver is not None else None)
        if receiver is not None:
            await receiver.start(client)  # type: ignore[arg-type]
        actor = TeacherActor(cfg, build_gateway(cfg, r, client, callbacks=receiver), r)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, actor.stop)
        rep = await actor.run()
        print(f"worker {os.getpid()} {rep} gateway={actor.gateway.counters} "
              f"callbacks={receiver.counters if receiver is not None else None}", flush=True)
        if receiver is not None:
            await receiver.stop()
        await client.aclose()
        await r.aclose()

    asyncio.run(main())
    return 0


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def slot_use(jobs: Any, w0: float, w1: float) -> float:
    """In-flight slot-seconds held at the server within [w0, w1] (epoch s) / (IN_FLIGHT x window): exact."""
    now = time.time()
    with jobs.lock:
        spans = [(j.created_at, j.completed_at if j.completed_at is not None else now) for j in jobs.jobs.values()]
    held = sum(max(0.0, min(end, w1) - max(start, w0)) for start, end in spans)
    return held / (IN_FLIGHT * (w1 - w0))


def refill_gaps(jobs: Any, w0: float, w1: float) -> list[float]:
    """Seconds from each job's end at the server (in the window) to the next create that refills a slot:
    the idle time a freed slot costs, what bounds "quota used" once nothing throttles."""
    with jobs.lock:
        ends = sorted(j.completed_at for j in jobs.jobs.values() if j.completed_at is not None and w0 <= j.completed_at < w1)
        starts = sorted(j.created_at for j in jobs.jobs.values() if j.created_at >= w0)
    gaps, i = [], 0
    for e in ends:
        while i < len(starts) and starts[i] < e:
            i += 1
        if i == len(starts):
            break
        gaps.append(starts[i] - e)
        i += 1
    return sorted(gaps)


def run_cell(n: int, mode: str, seconds: float, callbacks: bool = False) -> dict[str, Any]:
    import redis

    from afd_async.teacher.actor import decode_record, encode_record
    from afd_async.teacher.cache import decode_entry
    from afd_async.teacher.server import FaultConfig, create_app, serve
    from afd_async.store.redis_server import RedisServer

    capacity = min(RATE / 60.0, IN_FLIGHT / RENDER_S)  # jobs/s the account allows
    with RedisServer() as rs:
        r = redis.Redis(**rs.client_kwargs())
        app = create_app(backend=tiny_backend, api_keys=[KEY], create_rate_per_min=RATE, max_in_flight=IN_FLIGHT,
                         max_queued=1000, render_latency_s=RENDER_S, faults=FaultConfig(), result_ttl_s=600,
                         render_workers=32, webhook_secret=WEBHOOK_SECRET if callbacks else None)
        handle = serve(app)
        jobs = app.state.jobs
        handlers = next(rt.endpoint.__self__ for rt in app.routes if hasattr(getattr(rt, "endpoint", None), "__self__"))
        n_prompts = int(capacity * (seconds + 60 + 10 * n) * 1.5)
        r.lpush("afd:teacher:queue", *[encode_record(f"bench prompt {i}", 0) for i in range(n_prompts)])
        env = {**os.environ, "AFD_TEACHER_API_KEY": KEY, "PYTHONPATH": str(REPO), "AFD_LOG_LEVEL": "WARNING",
               "AFD_TEACHER_WEBHOOK_SECRET": WEBHOOK_SECRET}
        overrides = worker_overrides(rs.url, handle.port, mode, callbacks)
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", *overrides],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(n)]
        try:
            deadline = time.monotonic() + 120
            while len(r.keys("afd:teacher:alive:*")) < n:  # every process has started its loop
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError("actor processes failed to start")
                time.sleep(0.1)
            time.sleep(min(5.0, seconds / 4))  # settle into steady state (ramp-up is not the quota's fault)
            occupancy: list[int] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.05):
                    with jobs.lock:
                        occupancy.append(jobs.active_count())

            threading.Thread(target=sample, daemon=True).start()
            c0 = dict(handlers.counters, throttled_total=sum(handlers.counters["throttled"].values()))
            t0, w0 = time.monotonic(), time.time()
            time.sleep(seconds)
            c1 = dict(handlers.counters, throttled_total=sum(handlers.counters["throttled"].values()))
            elapsed, w1 = time.monotonic() - t0, time.time()
            slots, gaps = slot_use(jobs, w0, w1), refill_gaps(jobs, w0, w1)
            stop.set()
            rss = [rss_mb(p.pid) for p in procs]
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
        accepted = c1["creates_accepted"] - c0["creates_accepted"]
        requests = c1["creates_total"] - c0["creates_total"]
        throttled = c1["throttled_total"] - c0["throttled_total"]
        with jobs.lock:
            server_prompts = [j.prompt for j in jobs.jobs.values()]
        duplicates = len(server_prompts) - len(set(server_prompts))
        entries = [decode_entry(r.get(k)) for k in r.keys("afd:teacher:cache:clip:*")]
        lat = sorted(e.meta.latency_s for e in entries)
        waiting = r.lrange("afd:teacher:queue", 0, -1) + [v for k in r.keys("afd:teacher:processing:*")
                                                          for v in r.lrange(k, 0, -1)]
        accounted = {e.prompt for e in entries} | {decode_record(v).prompt for v in waiting} | \
            {f[b"prompt"].decode() for _id, f in r.xrange("afd:teacher:dead") if b"prompt" in f}
        lost = n_prompts - len(accounted)  # a prompt done *and* handed back (SIGTERM mid-ack) counts once
        handle.stop()
    return {"n": n, "mode": mode, "callbacks": callbacks, "seconds": elapsed, "used": slots,
            "creates": accepted / (capacity * elapsed),
            "occupancy": statistics.fmean(occupancy) / IN_FLIGHT if occupancy else float("nan"),
            "throttled": throttled / max(1, requests), "requests": requests, "lost": lost, "dup": duplicates,
            "p50": lat[len(lat) // 2] if lat else float("nan"), "p95": lat[int(len(lat) * 0.95)] if lat else float("nan"),
            "rss": max(rss), "throttled_n": throttled,
            "gap_ms": 1000 * statistics.fmean(gaps) if gaps else float("nan"),
            "gap_p95_ms": 1000 * gaps[int(len(gaps) * 0.95)] if gaps else float("nan")}


def measure_quota(actors: int, seconds: float, callbacks: bool) -> dict[str, Any]:
    """One cell with the shared quota: `actors` processes on one account for a `seconds` window.

    Returns at least `quota_used` (fraction of the account's in-flight slot-seconds held by jobs),
    `throttled` (429s), `lost` and `duplicates` (counts), plus the table's other columns.
    """
    c = run_cell(actors, "shared", seconds, callbacks)
    return {"quota_used": c["used"], "throttled": int(c["throttled_n"]), "lost": int(c["lost"]),
            "duplicates": int(c["dup"]), "creates_used": c["creates"], "occupancy": c["occupancy"],
            "p50_s": c["p50"], "p95_s": c["p95"], "requests": c["requests"], "seconds": c["seconds"],
            "refill_gap_ms": c["gap_ms"], "refill_gap_p95_ms": c["gap_p95_ms"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window per cell (30 for the report)")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--modes", nargs="+", default=["shared"], choices=["shared", "naive"])
    ap.add_argument("--callbacks", nargs="+", default=["on"], choices=["on", "off"],
                    help="completion callbacks (webhooks) on, off (polling alone), or both")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.worker:
        return run_worker(rest)
    print(f"quota: {RATE:g} creates/min, {IN_FLIGHT} in flight, {RENDER_S:g} s render -> capacity "
          f"{min(RATE / 60, IN_FLIGHT / RENDER_S):g} jobs/s; {WORKERS} workers/process; window {args.seconds:g} s; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start", flush=True)
    head = (f"{'N':>3} {'limiter':<8} {'callbacks':<9} {'quota used':>10} {'creates':>7} {'occupancy':>9} "
            f"{'throttled':>9} {'429s':>6} {'lost':>4} {'dups':>4} {'p50 s':>6} {'p95 s':>6} {'RSS MB':>6} "
            f"{'gap ms':>6} {'gap95':>6}")
    rows = []
    for n in args.procs:
        for mode in args.modes:
            for cb in args.callbacks:
                c = run_cell(n, mode, args.seconds, cb == "on")
                rows.append(c)
                print(f"done N={n} {mode} callbacks={cb} (load average {os.getloadavg()[0]:.1f})", flush=True)
    print(head)
    for c in rows:
        print(f"{c['n']:>3} {c['mode']:<8} {'on' if c['callbacks'] else 'off':<9} {c['used']:>10.1%} "
              f"{c['creates']:>7.1%} {c['occupancy']:>9.1%} {c['throttled']:>9.2%} {c['throttled_n']:>6} "
              f"{c['lost']:>4} {c['dup']:>4} {c['p50']:>6.2f} {c['p95']:>6.2f} {c['rss']:>6.0f} "
              f"{c['gap_ms']:>6.1f} {c['gap_p95_ms']:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
