"""`afd run`: the main job. Every role as its own process, on a private Redis, with progress shown.

    redis-server (private, free loopback port)  ← started here
    teacher-server → teacher-actor → student-actor → feeder → d-learner, student-learner
    poll the run's status hash until the student learner writes its outputs, then stop all (SIGTERM)

A role that crashes is restarted (bounded, with backoff: `cluster.max_restarts`
and friends, see `supervisor.RestartPolicy`), and so is the redis-server, which
runs with AOF on (`cluster.redis_appendfsync`) so a restart loses nothing.
`hooks` (fault injectors, the fault ledger: `launch.hooks`) ride along.

`afd run cluster=<name>` with `cluster.mode=external` points the same roles at an
external Redis and hosts instead (docker compose starts them itself).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from afd_async.config.root import RootConfig
from afd_async.launch.hooks import RunHandle, RunHook
from afd_async.launch.redis_guard import RedisGuard
from afd_async.launch.supervisor import RestartPolicy, RoleFailed, Supervisor
from afd_async.store.keys import RunKeys
from afd_async.security.local import local_security, run_teacher_key
from afd_async.store.redis_server import RedisServer

log = logging.getLogger(__name__)

ROLE_ORDER = ("teacher-server", "teacher-actor", "d-learner", "student-learner", "feeder", "student-actor")


def _prefill_text_cache(cfg: RootConfig, cache_dir: Path) -> None:
    """Encode every prompt once here, so no role process loads the sentence model."""
    from afd_async.config.prompts import eval_prompts, train_prompts
    from afd_async.models.text_encoder import CachedTextEncoder

    enc = CachedTextEncoder(cfg.text.kind, cache_dir=str(cache_dir))
    enc.encode([r.prompt for r in train_prompts(cfg) + eval_prompts(cfg)])  # prompts= / eval_prompts= or the splits


def role_overrides(cfg: RootConfig, redis_port: int, out: Path, text_cache: Path, *,
                   taken: set[int] | None = None) -> list[str]:
    """The cluster block of a local run: every port free, every host loopback, metrics on any free port.

    `taken`: ports the caller reserved already (they are avoided, and the new ones added).
    """
    taken = set() if taken is None else taken
    return [
        "cluster.mode=external",
        "cluster.host=127.0.0.1",
        f"cluster.redis_url=redis://127.0.0.1:{redis_port}/0",
        "cluster.metrics_port=0",
        f"cluster.teacher_server_port={reserve_port(exclude=taken)}",
        f"cluster.feeder_port={reserve_port(pair=True, exclude=taken)}",
        f"cluster.student_learner_port={reserve_port(pair=True, exclude=taken)}",
        f"cluster.d_learner_port={reserve_port(pair=True, exclude=taken)}",
        f"train.output_dir={out}",
        f"text.cache_dir={text_cache}",
        "train.torch_threads=1",
    ]


def reserve_port(*, pair: bool = False, exclude: set[int] | None = None, low: int = 20000, high: int = 32000) -> int:
    """A free port p (and p + 1 when `pair`) below the kernel's ephemeral range (32768+).

    Ports picked here are bound later by child processes; taking them from the
    ephemeral range would race with every socket that binds port 0 meanwhile
    (metrics servers, clients), so they come from a range the kernel never assigns.
    """
    import random
    import socket

    rng = random.Random()
    for _ in range(200):
        p = rng.randrange(low, high - 1)
        wanted = {p, p + 1} if pair else {p}
        if exclude is not None and wanted & exclude:
            continue
        socks = []
        try:
            for port in (p, p + 1) if pair else (p,):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            if exclude is not None:
                exclude.update(wanted)
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise OSError(f"no free port{' pair' if pair else ''} in {low}..{high} on 127.0.0.1")


def restart_policy(cfg: RootConfig) -> RestartPolicy:
    c = cfg.cluster
    return RestartPolicy(max_restarts=c.max_restarts, window_s=c.restart_window_s, backoff_s=c.restart_backoff_s,
                         backoff_max_s=c.restart_backoff_max_s)


def launch(cfg: RootConfig, user_overrides: Sequence[str], *, show_progress: bool = True, timeout_s: float = 3600.0,
           hooks: Sequence[RunHook] = ()) -> dict:
    """Run every role until the student learner is done; returns the run summary (plus `restarts`)."""
    from afd_async.config.credentials import Secret

    out = Path(cfg.train.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    text_cache = out / "text_cache"
    _prefill_text_cache(cfg, text_cache)
    api_key = run_teacher_key()  # for the local teacher server only (the caller's, or fresh); lives in the children's env
    sec = local_security(cfg, out / "redis")  # per-role Redis ACL users when cluster.redis_acl (afd_async.security)
    env = {**os.environ, "AFD_TEACHER_API_KEY": api_key, "HF_HUB_OFFLINE": "1"}
    policy = restart_policy(cfg)
    with RedisServer(data_dir=str(out / "redis"), appendonly=True, appendfsync=cfg.cluster.redis_appendfsync,
                     **sec.server_kwargs()) as redis_srv, \
            Supervisor(out / "logs", base_env=env, restart=policy) as sup:
        guard = RedisGuard(redis_srv, policy)
        taken: set[int] = set()
        overrides = [*user_overrides, *role_overrides(cfg, redis_srv.port, out, text_cache, taken=taken)]
        ranks = {"d-learner": cfg.cluster.d_learner_ranks, "student-learner": cfg.cluster.student_learner_ranks}
        for role in ROLE_ORDER:
            sup.start(role, role, overrides, env={"AFD_ACTOR_ID": f"{role}-0", **sec.role_env(role)},
                      ranks=ranks.get(role, 1))
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from afd_async.config import load_config

        r = redis.Redis(**redis_srv.client_kwargs(), retry=Retry(NoBackoff(), 0))  # the loop below retries
        keys = RunKeys()
        role_cfg = load_config(overrides)  # what the roles run with (ports, output dir)
        run = RunHandle(cfg=role_cfg, redis=r, keys=keys, supervisor=sup, redis_guard=guard,
                        teacher_url=f"http://127.0.0.1:{role_cfg.cluster.teacher_server_port}",
                        teacher_key=Secret(api_key), out=out)

        def tick() -> None:
            guard.check()
            sup.check()
            for h in hooks:
                h.tick(run)

        status = _watch(r, keys, sup, cfg, show_progress=show_progress, timeout_s=timeout_s, tick=tick)
        r.set(keys.stop, 1)
        codes = sup.stop_all(timeout_s=30, keep=("teacher-server",))
        for h in hooks:
            h.finish(run)
        codes.update(sup.stop_all(timeout_s=30))
        log.info("role exit codes: %s", codes)
        restarts = run.restarts()
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"status": status}
    summary["restarts"] = restarts
    return summary


def _watch(r, keys: RunKeys, sup: Supervisor, cfg: RootConfig, *, show_progress: bool, timeout_s: float,
           tick: Optional[Callable[[], None]] = None) -> dict:
    import redis
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TextColumn("{task.fields[info]}"), disable=not show_progress) as bar:
        task = bar.add_task("student steps", total=cfg.train.steps, info="starting roles")
        last_print = 0.0
        while True:
            (tick or sup.check)()  # first: a dead redis-server is restarted before we ask it anything
            try:
                status = {k.decode(): v.decode() for k, v in r.hgetall(keys.status).items()}
            except redis.ConnectionError:  # it died since; the next pass restarts it
                time.sleep(0.1)
                continue
            steps = int(status.get("student_steps", 0))
            info = (f"pairs {status.get('pairs_written', 0)}  D v{status.get('d_version', 0)} acc "
                    f"{float(status.get('d_acc', 0)):.2f}  dropped-stale {status.get('pairs_dropped_stale', 0)}")
            bar.update(task, completed=steps, info=info)
            if not show_progress and time.monotonic() - last_print > 10:
                print(f"[afd run] student steps {steps}/{cfg.train.steps} | {info}", flush=True)
                last_print = time.monotonic()
            if status.get("done") == "1":
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"afd run did not finish in {timeout_s:.0f}s; logs in {sup.log_dir}")
            time.sleep(0.5)


def main(cfg: RootConfig, overrides: Sequence[str]) -> int:
    from afd_async.train.evaluate import describe_change

    if cfg.cluster.mode == "external":
        print("afd run: cluster.mode=external — start the roles with docker compose or `afd <role>` on each host",
              file=sys.stderr)
        return 2
    from afd_async.config.prompts import run_source_problem

    if (problem := run_source_problem(cfg)) is not None:  # a teacher file source never pairs in afd run (issue 17.3)
        print(f"afd run: {problem}", file=sys.stderr)
        return 2
    try:
        summary = launch(cfg, overrides, show_progress=sys.stderr.isatty())
    except RoleFailed as e:
        print(f"afd run: {e}", file=sys.stderr)
        return 1
    s, f = summary.get("start", {}), summary.get("final", {})
    print(f"afd run ({summary.get('algo')}, k={summary.get('staleness')}): {summary.get('steps')} steps in "
          f"{summary.get('seconds')}s, {summary.get('pairs_per_s')} pairs/s | final D accuracy {summary.get('final_d_acc')} | "
          f"{describe_change(s, f)} | "
          f"outputs in {cfg.train.output_dir}")
    return 0
