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

import contextlib
import json
import logging
import math
import os
import random
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Optional, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from afd_async.config import load_config
from afd_async.config.credentials import Secret
from afd_async.config.prompts import eval_prompts, run_source_problem, train_prompts
from afd_async.config.root import RootConfig
from afd_async.launch.hooks import RunHandle, RunHook
from afd_async.launch.redis_guard import RedisGuard
from afd_async.launch.run_record import (
    NothingToDo, RunFolderRefused, checkpointed_steps, prepare_run_folder, record_finished,
)
from afd_async.launch.supervisor import RestartPolicy, RoleFailed, Supervisor
from afd_async.launch.watchdog import LOG_LINES, ProgressWatch, RunStalled, TeacherView, describe_stall, diagnose
from afd_async.models.text_encoder import CachedTextEncoder
from afd_async.store.keys import RunKeys
from afd_async.security.local import local_security, run_teacher_key, run_webhook_secret_env
from afd_async.store.redis_server import RedisServer
from afd_async.teacher.clips import clip_record_key
from afd_async.train.evaluate import describe_change
from afd_async.train.objectives import get_objective

log = logging.getLogger(__name__)

ROLE_ORDER = ("teacher-server", "teacher-actor", "d-learner", "student-learner", "feeder", "student-actor")
# The roles that mark themselves ready in the run's status (RoleContext.announce_ready): the heavy starters (torch,
# models, sockets). The teacher server holds no Redis client and the teacher actor may not write run keys (its ACL
# user is kept to the teacher namespaces); both start in about a second and are diagnosed by what they fail to make.
READY_ROLES = ("d-learner", "student-learner", "feeder", "student-actor")


def _prefill_text_cache(cfg: RootConfig, cache_dir: Path) -> None:
    """Encode every prompt once here, so no role process loads the sentence model.

    Not for a Wan student: its roles read UMT5 features (cached under their own key), each prompt encoded on
    a miss where the role computes; encoding every prompt of the splits here, on the CPU, would cost minutes.
    """
    if cfg.student.kind == "wan":
        return
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
           hooks: Sequence[RunHook] = (), hurry: Optional[threading.Event] = None,
           spawn_guard: Callable[[], ContextManager[object]] = contextlib.nullcontext,
           stop_check: Callable[[], None] = lambda: None) -> dict:
    """Run every role until the student learner is done; returns the run summary (plus `restarts`, `wall_s`).

    Before anything starts, the output folder is checked against the config (`run_record`: raises
    `RunFolderRefused` or `NothingToDo`). While the run goes, `train.stall_timeout_s` without progress, or a role
    that exits 0 before the run is done, raises `RunStalled` (the diagnosis). On any exception (`Interrupted` by
    SIGTERM/SIGINT, a failed role, a stall) every role is stopped at once within `train.stop_grace_s`
    (`Supervisor.terminate_all`; `hurry` set cuts the grace short) before it propagates. Every role starts
    inside `spawn_guard()` (`StopSignals.deferred`: a signal then cannot leave a started role unrecorded), and
    `stop_check()` runs at every pass of the watch loop and once the roles are stopped
    (`StopSignals.raise_if_received`: a signal whose raise a finalizer swallowed still stops the run).
    """
    t_start = time.monotonic()
    prepared = prepare_run_folder(cfg, user_overrides)
    out = Path(cfg.train.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    text_cache = out / "text_cache"
    _prefill_text_cache(cfg, text_cache)
    api_key = run_teacher_key()  # for the local teacher server only (the caller's, or fresh); lives in the children's env
    sec = local_security(cfg, out / "redis")  # per-role Redis ACL users when cluster.redis_acl (afd_async.security)
    env = {**os.environ, "AFD_TEACHER_API_KEY": api_key, **run_webhook_secret_env(), "HF_HUB_OFFLINE": "1"}
    policy = restart_policy(cfg)
    with RedisServer(data_dir=str(out / "redis"), appendonly=True, appendfsync=cfg.cluster.redis_appendfsync,
                     **sec.server_kwargs()) as redis_srv, \
            Supervisor(out / "logs", base_env=env, restart=policy, spawn_guard=spawn_guard) as sup:
        r = redis.Redis(**redis_srv.client_kwargs(), retry=Retry(NoBackoff(), 0))  # the loop below retries
        keys = RunKeys()
        # a resumed run (or one extended to more steps): the end of the last invocation is not this one's
        r.delete(keys.stop)
        r.hdel(keys.status, "done", *map(keys.ready_field, READY_ROLES))  # this invocation's roles mark anew
        guard = RedisGuard(redis_srv, policy)
        taken: set[int] = set()
        # the folder was checked above: a role the supervisor restarts resumes this run's checkpoints
        overrides = [*user_overrides, *role_overrides(cfg, redis_srv.port, out, text_cache, taken=taken),
                     "train.resume=true"]
        ranks = {"d-learner": cfg.cluster.d_learner_ranks, "student-learner": cfg.cluster.student_learner_ranks}
        try:
            for role in ROLE_ORDER:
                sup.start(role, role, overrides, env={"AFD_ACTOR_ID": f"{role}-0", **sec.role_env(role)},
                          ranks=ranks.get(role, 1))
            role_cfg = load_config(overrides)  # what the roles run with (ports, output dir)
            teacher_url = f"http://127.0.0.1:{role_cfg.cluster.teacher_server_port}"
            run = RunHandle(cfg=role_cfg, redis=r, keys=keys, supervisor=sup, redis_guard=guard, teacher_url=teacher_url,
                            teacher_key=Secret(api_key), out=out)

            def tick() -> None:
                stop_check()
                guard.check()
                sup.check()
                for h in hooks:
                    h.tick(run)

            # from here: every role is started; the stall clock applies once each has marked itself ready
            watch = ProgressWatch(cfg.train.stall_timeout_s, cfg.train.start_timeout_s, READY_ROLES)

            def check_progress(status: dict[str, str]) -> None:
                watch.observe(status)
                gone = sup.finished_early()
                if gone and r.hget(keys.status, "done") == b"1":
                    return  # the student learner finished the run and exited since `status` was read
                if gone or watch.stalled():
                    needs_d = get_objective(cfg.algo.name).student_waits_for_d
                    stall = diagnose(status, steps=cfg.train.steps, needs_d=needs_d, gone=gone,
                                     teacher=_teacher_view(r, keys, cfg), teacher_url=teacher_url,
                                     not_ready=watch.not_ready())
                    raise RunStalled(describe_stall(stall, idle_s=watch.idle_s, timeout_s=watch.timeout_s,
                                                    timeout_key=watch.timeout_key,
                                                    status=status, steps=cfg.train.steps, log_dir=sup.log_dir,
                                                    tail=lambda name: sup.tail(sup.role(name), LOG_LINES)))

            status = _watch(r, keys, sup, cfg, show_progress=show_progress, timeout_s=timeout_s, tick=tick,
                            progress=check_progress)
            r.set(keys.stop, 1)
            codes = sup.stop_all(timeout_s=30, keep=("teacher-server",))
            for h in hooks:
                h.finish(run)
            codes.update(sup.stop_all(timeout_s=30))
            stop_check()  # a signal during the stop, its raise lost: the run ends as interrupted, not as done
        except BaseException as e:  # interrupted, failed or stalled: every role stops now, in parallel
            t_stop = time.monotonic()
            codes = sup.terminate_all(cfg.train.stop_grace_s, last=("teacher-server",), hurry=hurry)
            log.info("role exit codes after %s: %s", type(e).__name__, codes)
            interrupt = interrupt_in(e)
            if interrupt is not None:
                interrupt.codes, interrupt.stop_s = codes, time.monotonic() - t_stop
                if interrupt is not e:
                    raise interrupt from e
            raise
        log.info("role exit codes: %s", codes)
        restarts = run.restarts()
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"status": status}
    summary["restarts"] = restarts
    summary["wall_s"] = round(time.monotonic() - t_start, 1)
    summary["resumed"] = prepared.resumed
    if "steps" in summary:  # the learner wrote this invocation's summary: add the launcher's part, mark the run done
        summary_path.write_text(json.dumps(summary, indent=2))
        record_finished(cfg, summary["steps"])
    return summary


def _teacher_view(r, keys: RunKeys, cfg: RootConfig) -> TeacherView:
    """The teacher side's counts for a stall diagnosis (a SCAN over the clip cache: only at a stall)."""
    clips = sum(1 for _ in r.scan_iter(match=clip_record_key("*"), count=1000))
    return TeacherView(groups_requested=int(r.scard(keys.requested)), queued=int(r.llen(cfg.teacher.source.queue_key)),
                       clips=clips)


def _watch(r, keys: RunKeys, sup: Supervisor, cfg: RootConfig, *, show_progress: bool, timeout_s: float,
           tick: Optional[Callable[[], None]] = None, progress: Optional[Callable[[dict], None]] = None) -> dict:
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
            if progress is not None:
                progress(status)  # raises RunStalled with the diagnosis
            if time.monotonic() > deadline:
                raise TimeoutError(f"afd run did not finish in {timeout_s:.0f}s; logs in {sup.log_dir}")
            time.sleep(0.5)


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached `afd run` (a BaseException, like KeyboardInterrupt: no `except Exception` eats it).

    `launch` fills `codes` (each role's exit code) and `stop_s` once every role it started has stopped.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.codes: Optional[dict[str, Optional[int]]] = None
        self.stop_s = 0.0


def interrupt_in(e: BaseException) -> Optional[Interrupted]:
    """The `Interrupted` behind `e`: `e` itself, or one a library caught and re-raised as another error.

    The signal handler raises wherever the launcher is; inside Hydra's config composition (`load_config`),
    Hydra turns it into a composition error, which would end `afd run` as a failure (exit 1), not a stop.
    """
    seen: set[int] = set()
    cur: Optional[BaseException] = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, Interrupted):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class StopSignals:
    """SIGTERM/SIGINT handlers of `afd run`: the first raises `Interrupted` where the launcher is (it then stops
    every role it started, in parallel, within `train.stop_grace_s`); a second one sets `hurry` (SIGKILL now).

    The roles run in sessions of their own, so a terminal's Ctrl-C reaches the launcher only and the stop is
    the launcher's to make; a launcher killed with SIGKILL leaves it to each role's orphan watchdog (`orphan.py`).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.hurry = threading.Event()
        self.received: Optional[int] = None
        self._previous: dict[int, object] = {}
        self._deferring = 0
        self._pending: Optional[int] = None

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a first signal until the block ends, then raise it.

        Why: raised inside `subprocess.Popen` or between it and the supervisor's bookkeeping, `Interrupted`
        would leave a role process started but unrecorded, so never stopped (seen: "stopped all 5 roles" of 6).
        The supervisor starts each role inside this block.
        """
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring and self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)

    def raise_if_received(self) -> None:
        """Raise the first signal's `Interrupted` again, outside a `deferred` block, once one was received.

        Why: a handler runs between any two bytecodes, also inside a `__del__` or a weakref callback, where
        Python prints the exception it raises and drops it (seen: a redis `ConnectionPool.__del__` swallowed a
        SIGINT, and the run went on to finish with exit 0). The launcher's loop calls this every pass, so a
        lost raise costs at most one pass. Harmless when the first raise got through: it is already on its way
        out of the loop.
        """
        if self.received is not None and not self._deferring:
            raise Interrupted(self.received)

    def __enter__(self) -> "StopSignals":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is None:
            self.received = signum
            if self._deferring:
                self._pending = signum
                return
            raise Interrupted(signum)
        self.hurry.set()


def describe_interrupt(cfg: RootConfig, e: Interrupted) -> str:
    """What `afd run` says after SIGTERM/SIGINT: how the roles ended and what the folder holds to resume from."""
    name = signal.Signals(e.signum).name
    if e.codes is None:
        return f"afd run: {name}: no role was running"
    killed = sorted(role for role, code in e.codes.items() if code == -signal.SIGKILL)
    how = f"; killed after the {cfg.train.stop_grace_s:g}s grace: {', '.join(killed)}" if killed else ""
    return (f"afd run: {name}: stopped all {len(e.codes)} roles in {e.stop_s:.1f}s{how}. {cfg.train.output_dir} holds "
            f"{checkpointed_steps(cfg)}/{cfg.train.steps} student steps in its checkpoints; the same command resumes "
            f"the run")


def describe_result(cfg: RootConfig, summary: dict) -> str:
    """The line `afd run` ends with: this invocation's own figures (a resumed run's too), then the run's."""
    this = summary.get("steps_this_run", summary.get("steps"))
    rate = summary.get("pairs_per_s")
    figures = (f"{this} step{'s' * (this != 1)} in {summary.get('seconds')}s, "
               f"{'no' if rate is None else rate} pairs/s ({summary.get('wall_s')}s wall)")
    if summary.get("resumed"):
        figures = (f"resumed {cfg.train.output_dir} at step {summary.get('resumed_at', 0)}: {figures}; "
                   f"{summary.get('steps')}/{cfg.train.steps} steps in all")
    return (f"afd run ({summary.get('algo')}, k={summary.get('staleness')}): {figures} | final D accuracy "
            f"{summary.get('final_d_acc')} | {describe_change(summary.get('start', {}), summary.get('final', {}))} | "
            f"outputs in {cfg.train.output_dir}")


def main(cfg: RootConfig, overrides: Sequence[str]) -> int:
    """`afd run`: exit 0 when the run finished (or had nothing to do), 1 when it failed or stalled, 2 when its
    folder holds a run of another config, 128 + the signal when stopped by SIGTERM/SIGINT."""
    if cfg.cluster.mode == "external":
        print("afd run: cluster.mode=external — start the roles with docker compose or `afd <role>` on each host",
              file=sys.stderr)
        return 2

    if (problem := run_source_problem(cfg)) is not None:  # a teacher file source never pairs in afd run (issue 17.3)
        print(f"afd run: {problem}", file=sys.stderr)
        return 2
    try:
        get_objective(cfg.algo.name)  # an unknown objective is refused here, not by every learner it starts
    except ValueError as e:
        print(f"afd run: {e}", file=sys.stderr)
        return 2
    try:
        with StopSignals() as signals:  # no overall time limit: the stall watch ends a run that stopped moving
            summary = launch(cfg, overrides, show_progress=sys.stderr.isatty(), timeout_s=math.inf,
                             hurry=signals.hurry, spawn_guard=signals.deferred, stop_check=signals.raise_if_received)
    except NothingToDo as e:
        print(f"afd run: {e}")
        return 0
    except RunFolderRefused as e:
        print(f"afd run: {e}", file=sys.stderr)
        return 2
    except (RoleFailed, RunStalled) as e:
        print(f"afd run: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(describe_interrupt(cfg, e), file=sys.stderr)
        return 128 + e.signum
    print(describe_result(cfg, summary))
    return 0
