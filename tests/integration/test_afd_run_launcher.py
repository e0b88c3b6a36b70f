"""`afd run` as a user meets it (issue 17.1, 17.2, 17.4, 17.5), through the real launcher, with the exact messages:
an unknown group choice, SIGTERM/SIGINT (every role ends, the checkpoints resume), a resumed run's own figures, a
complete run, a folder of another config, a stalled run and a role gone while the others wait on it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["experiment=smoke", "train.eval_prompts=2", "train.d_probe_every=0", "text.kind=hash", "algo.d_warmup_steps=1"]
GRACE_S = 10.0  # train.stop_grace_s (default)
# The SIGTERM test asks whether every role stops on its own, not how fast a loaded machine lets it: it gives the
# roles a grace no loaded machine runs out of, and the run still ends as soon as the last role is gone.
SIGTERM_GRACE_S = 60.0


def afd(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "afd_async.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def start_afd_run(*overrides: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "afd_async.cli", "run", *overrides], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)


def wait_for(predicate: Callable[[], bool], *, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"afd run exited ({proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not before the deadline ({timeout_s:.0f}s)")
        time.sleep(0.1)


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _exe(pid: int) -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def started_by(launcher: int) -> dict[str, int]:
    """`{role: pid}` of the processes `afd run` (pid `launcher`) started: its roles, and its redis-server."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == launcher:
            continue
        pid = int(entry.name)
        try:
            env = dict(kv.split("=", 1) for kv in (entry / "environ").read_bytes().decode(errors="replace").split("\0")
                       if "=" in kv)
        except OSError:
            continue
        stat = _stat(pid)
        if env.get("AFD_SUPERVISOR_PID") == str(launcher) and env.get("AFD_ROLE_NAME"):
            found.setdefault(env["AFD_ROLE_NAME"], pid)
        elif stat is not None and stat[1] == str(launcher) and _exe(pid) not in (None, _exe(launcher)):
            found[f"child {pid}"] = pid  # the redis-server; a role forked but not yet exec'd is still the launcher
    return found


def trained_a_step(out: Path) -> bool:
    metrics = out / "metrics.jsonl"
    return metrics.is_file() and '"phase": "train"' in metrics.read_text()


def test_an_unknown_group_choice_stops_at_start_with_the_choices(tmp_path):
    out = tmp_path / "run"
    choices = ", ".join(sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml")))
    proc = afd("run", "experiment=smok", f"train.output_dir={out}", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"afd: configuration error: unknown experiment 'smok'; did you mean 'smoke'? choices: {choices}")
    assert not out.exists()  # nothing started
    proc = afd("config", "experiment=doesnotexist", timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"afd: configuration error: unknown experiment 'doesnotexist'; choices: {choices}"


STEPS = 12
RESUMABLE = [*TINY, f"train.steps={STEPS}", "train.checkpoint_every=1"]


@pytest.fixture(scope="module")
def sigterm_then_resume(tmp_path_factory):
    """SIGTERM once a step is trained; then the same command three times: it resumes, then has nothing to do;
    then a command of another config is refused."""
    out = tmp_path_factory.mktemp("afd_run") / "run"
    run = [*RESUMABLE, f"train.output_dir={out}", f"train.stop_grace_s={SIGTERM_GRACE_S:g}"]
    proc = start_afd_run(*run)
    res: dict = {"out": out}
    try:
        wait_for(lambda: trained_a_step(out), timeout_s=300, what="a trained step", proc=proc)
        res["started"] = started_by(proc.pid)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        res["stopped"] = proc.communicate(timeout=120)
        res["stop_s"], res["code"] = time.monotonic() - t0, proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    res["alive after"] = {name: pid for name, pid in res["started"].items() if alive(pid)}
    res["resumed"] = afd("run", *run)
    res["summary"] = json.loads((out / "summary.json").read_text())
    res["again"] = afd("run", *run, timeout=120)
    res["other"] = afd("run", *run, "train.batch_size=4", "algo.lr_student=0.5", timeout=120)
    return res


@pytest.mark.slow
def test_sigterm_ends_every_role_and_says_where_the_run_resumes(sigterm_then_resume):
    res = sigterm_then_resume
    assert {"teacher-server", "teacher-actor", "student-actor", "feeder", "d-learner",
            "student-learner"} <= set(res["started"]), res["started"]
    assert res["code"] == 128 + signal.SIGTERM
    assert res["stop_s"] < SIGTERM_GRACE_S + 20  # every role within its grace, then the launcher exits
    assert res["alive after"] == {}  # no role, no redis-server left behind
    last = res["stopped"][1].strip().splitlines()[-1]
    m = re.fullmatch(rf"afd run: SIGTERM: stopped all 6 roles in (\d+\.\d)s\. {re.escape(str(res['out']))} holds "
                     rf"(\d+)/{STEPS} student steps in its checkpoints; the same command resumes the run", last)
    assert m, last
    assert float(m.group(1)) < SIGTERM_GRACE_S  # every role stopped on its own (none killed after the grace)
    res["checkpointed"] = int(m.group(2))
    assert 1 <= res["checkpointed"] < STEPS


@pytest.mark.slow
def test_a_resumed_run_reports_its_own_figures(sigterm_then_resume):
    res = sigterm_then_resume
    proc, summary = res["resumed"], res["summary"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    at = summary["resumed_at"]
    assert 1 <= at < STEPS and summary["steps"] == STEPS and summary["steps_this_run"] == STEPS - at
    assert summary["resumed"] is True and summary["wall_s"] > summary["seconds"] > 0
    # this invocation's steps over this invocation's time; `seconds` is rounded to 0.1 s, so the rate lies
    # between the rates at seconds ± 0.05 (a few % on a run of a few seconds)
    pairs = (STEPS - at) * 2
    assert pairs / (summary["seconds"] + 0.05) <= summary["pairs_per_s"] <= pairs / (summary["seconds"] - 0.05)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"afd run (afd, k=1): resumed {res['out']} at step {at}: {STEPS - at} steps in "
                           f"{summary['seconds']}s, {summary['pairs_per_s']} pairs/s ({summary['wall_s']}s wall); "
                           f"{STEPS}/{STEPS} steps in all | final D accuracy "), last


@pytest.mark.slow
def test_a_complete_run_has_nothing_to_do(sigterm_then_resume):
    proc = sigterm_then_resume["again"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == (f"afd run: nothing to do: {sigterm_then_resume['out']} already has {STEPS}/{STEPS} "
                                   "steps (raise train.steps to train on; train.resume=false starts over)")


@pytest.mark.slow
def test_a_folder_of_another_config_is_refused_with_the_keys_and_the_options(sigterm_then_resume):
    proc = sigterm_then_resume["other"]
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-4:] == [
        f"afd run: {sigterm_then_resume['out']} holds a run of another config; 2 keys differ (recorded -> now):",
        "  algo.lr_student: 1e-05 -> 0.5",
        "  train.batch_size: 2 -> 4",
        "Use a new folder (train.output_dir=<another folder>), start over in it (train.resume=false: deletes its Redis "
        "data, learner checkpoints, metrics.jsonl and summary.json), or resume it with this config anyway "
        "(train.resume_with_changes=true)."]


@pytest.mark.slow
def test_sigint_during_start_up_ends_every_role(tmp_path):
    out = tmp_path / "run"
    proc = start_afd_run(*TINY, f"train.output_dir={out}")
    try:
        wait_for(lambda: len(started_by(proc.pid)) >= 7, timeout_s=120, what="6 roles and the redis-server", proc=proc)
        started = started_by(proc.pid)
        proc.send_signal(signal.SIGINT)  # a Ctrl-C reaches the launcher only: the roles run in sessions of their own
        _, err = proc.communicate(timeout=GRACE_S + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert re.fullmatch(rf"afd run: SIGINT: stopped all 6 roles in \d+\.\ds(; killed after the 10s grace: [a-z, -]+)?\. "
                        rf"{re.escape(str(out))} holds 0/4 student steps in its checkpoints; the same command resumes "
                        rf"the run", err.strip().splitlines()[-1]), err[-2000:]
    assert {name: pid for name, pid in started.items() if alive(pid)} == {}


@pytest.mark.slow
def test_a_run_where_no_pair_arrives_stops_with_a_diagnosis(tmp_path):
    out = tmp_path / "run"
    proc = afd("run", *TINY, f"train.output_dir={out}", "teacher.server.render_latency_s=3600",
               "train.stall_timeout_s=8", "train.stop_grace_s=3")  # start-up has its own clock (start_timeout_s)
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    first = next(i for i, line in enumerate(err) if line.startswith("afd run: "))
    assert re.fullmatch(r"afd run: no progress for \ds \(train.stall_timeout_s=8\): the teacher-actor waits for the "
                        r"teacher server \(http://127.0.0.1:\d+\): no teacher clip made yet for the \d+ groups requested "
                        r"\(\d+ requests still queued\); the student actor waits for these clips", err[first]), err[first]
    assert err[first + 1:first + 3] == ["  progress: pairs 0 | D v0 | student steps 0/4",
                                         f"  last lines of {out}/logs/teacher-actor.log:"]
    assert err[-1] == f"  see also: {out}/logs/teacher-server.log, {out}/logs/student-actor.log"
    tail = err[first + 3:-1]  # the last lines of the teacher actor's log (it polls its jobs: at least 12 lines)
    log = (out / "logs" / "teacher-actor.log").read_text()
    assert len(tail) == 12 and all(line.startswith("    ") and line[4:] in log for line in tail), tail


@pytest.mark.slow
def test_a_role_gone_while_the_others_wait_on_it_is_named(tmp_path):
    out = tmp_path / "run"
    proc = start_afd_run(*TINY, f"train.output_dir={out}", "train.steps=8", "train.stop_grace_s=3")
    log = out / "logs" / "teacher-actor.log"
    try:
        wait_for(lambda: log.is_file() and " started (" in log.read_text(), timeout_s=120,
                 what="the teacher actor's start", proc=proc)
        os.kill(started_by(proc.pid)["teacher-actor"], signal.SIGTERM)  # it stops gracefully: exit 0, not restarted
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    err = err.splitlines()
    first = next(i for i, line in enumerate(err) if line.startswith("afd run: "))
    assert err[first] == "afd run: the teacher-actor exited (code 0) while the run still needs it: the other roles wait on it"
    assert err[first + 2] == f"  last lines of {out}/logs/teacher-actor.log:"
    assert took < 60  # at once (its drain, the others' stop), not after train.stall_timeout_s (300 s)
