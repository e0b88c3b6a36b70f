"""The launcher's stall watch and diagnosis (`launch/watchdog.py`), its parallel stop (`Supervisor.terminate_all`)
and its signal handlers (`launch/run.py: StopSignals`), with fake clocks and tiny stand-in processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from afd_async.launch.run import Interrupted, StopSignals, interrupt_in
from afd_async.launch.supervisor import Role, Supervisor
from afd_async.launch.watchdog import ProgressWatch, TeacherView, diagnose

NO_TEACHER = TeacherView(groups_requested=0, queued=0, clips=0)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_watch_restarts_its_clock_on_any_progress():
    clock = Clock()
    watch = ProgressWatch(10.0, clock=clock)
    watch.observe({})
    clock.t = 9.0
    assert not watch.stalled()
    watch.observe({"pairs_written": "2"})  # progress
    clock.t = 18.0
    assert not watch.stalled() and watch.idle_s == 9.0
    watch.observe({"pairs_written": "2", "student_phase": "evaluating"})  # a phase change is progress too
    clock.t = 27.9
    assert not watch.stalled()
    clock.t = 28.0
    assert watch.stalled()
    assert not ProgressWatch(0.0, clock=clock).stalled()  # 0: never


def test_start_up_runs_on_its_own_clock_until_every_role_is_ready():
    """A slow start (imports, model builds, a loaded machine) is not a stalled pipeline: until every role has marked
    itself ready, the long start timeout applies; each mark restarts the clock; then the short stall timeout."""
    clock = Clock()
    roles = ("d-learner", "student-learner")
    watch = ProgressWatch(5.0, 60.0, roles, clock=clock)
    watch.observe({})
    clock.t = 59.0
    assert not watch.stalled() and watch.not_ready() == roles and watch.timeout_key == "train.start_timeout_s"
    watch.observe({"ready:d-learner": "11@1.0"})  # a mark is progress
    assert watch.not_ready() == ("student-learner",)
    clock.t = 118.9
    assert not watch.stalled()
    clock.t = 119.0
    assert watch.stalled()  # the student learner never finished starting
    assert stall({}, not_ready=watch.not_ready()).what == ("the student-learner has not finished starting (no ready "
                                                           "mark in the run's status)")
    watch.observe({"ready:d-learner": "11@1.0", "ready:student-learner": "12@2.0"})
    assert watch.not_ready() == () and watch.timeout_s == 5.0 and watch.timeout_key == "train.stall_timeout_s"
    clock.t = 123.9
    assert not watch.stalled()
    clock.t = 124.0
    assert watch.stalled()
    watch.observe({"ready:d-learner": "13@9.0", "ready:student-learner": "12@2.0"})  # a restarted role marks anew
    assert not watch.stalled()
    never = ProgressWatch(5.0, 0.0, roles, clock=clock)  # start_timeout_s=0: start-up never stalls
    never.observe({})
    clock.t = 10_000.0
    assert not never.stalled()


def stall(status, **kw):
    args = dict(steps=4, needs_d=True, gone={}, teacher=NO_TEACHER, teacher_url="http://t")
    return diagnose(status, **{**args, **kw})


def test_the_diagnosis_names_the_first_missing_link():
    assert stall({}).role == "student-actor"  # no teacher request yet
    s = stall({}, teacher=TeacherView(groups_requested=3, queued=5, clips=0))
    assert (s.role, s.logs[0]) == ("teacher-actor", "teacher-actor")
    assert s.what == ("the teacher-actor waits for the teacher server (http://t): no teacher clip made yet for the 3 "
                      "groups requested (5 requests still queued); the student actor waits for these clips")
    s = stall({}, teacher=TeacherView(groups_requested=3, queued=0, clips=6))
    assert s.role == "student-actor" and "6 clips are cached but no pair was written" in s.what
    assert stall({"pairs_written": "8"}).role == "d-learner"
    s = stall({"pairs_written": "8", "d_version": "3", "student_steps": "1"})
    assert s.what.startswith("the student-learner waits for batches from the feeder and D versions from the d-learner "
                             "(D v3): at step 1/4 with 8 pairs written")
    assert stall({"pairs_written": "8", "student_steps": "1"}, needs_d=False).role == "student-learner"  # sft: no D
    assert "is evaluating" in stall({"pairs_written": "8", "d_version": "3", "student_phase": "evaluating"}).what
    assert "has not written the run's outputs" in stall({"pairs_written": "8", "d_version": "3", "student_steps": "4"}).what


def test_a_role_gone_while_the_run_needs_it_comes_first():
    s = stall({"pairs_written": "8"}, gone={"student-actor": 0})
    assert s.role == "student-actor"
    assert s.what == "the student-actor exited (code 0) while the run still needs it: the other roles wait on it"


def stand_in(sup: Supervisor, name: str, code: str) -> Role:
    """A role whose process runs `code` (instead of `afd <role>`), in a session of its own as roles are."""
    role = Role(name, name, log_path=sup.log_dir / f"{name}.log",
                proc=subprocess.Popen([sys.executable, "-c", code], start_new_session=True))
    sup.roles.append(role)
    return role


def wait_for(predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.02)


def test_terminate_all_stops_every_role_at_once_and_kills_one_that_ignores_sigterm(tmp_path):
    ready = tmp_path / "ready"
    with Supervisor(tmp_path / "logs") as sup:
        polite = [stand_in(sup, f"polite-{i}", "import time; time.sleep(600)") for i in range(3)]
        stubborn = stand_in(sup, "stubborn", "import pathlib, signal, time; signal.signal(signal.SIGTERM, "
                                             f"signal.SIG_IGN); pathlib.Path({str(ready)!r}).touch(); time.sleep(600)")
        wait_for(ready.exists)  # its handler is in place
        t0 = time.monotonic()
        codes = sup.terminate_all(grace_s=1.0)
        took = time.monotonic() - t0
    assert codes == {**{r.name: -signal.SIGTERM for r in polite}, "stubborn": -signal.SIGKILL}
    assert 1.0 <= took < 10.0  # the grace once, not once per role
    assert "no stop 1s after SIGTERM: SIGKILL" in (tmp_path / "logs" / "stubborn.log").read_text()
    assert sup.finished_early() == {}  # stopped roles do not count as gone


def test_a_role_that_exited_0_unasked_is_finished_early(tmp_path):
    with Supervisor(tmp_path / "logs") as sup:
        role = stand_in(sup, "student-actor", "pass")
        wait_for(lambda: role.proc.poll() is not None)
        assert sup.finished_early() == {"student-actor": 0}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_interrupts_the_launcher_and_a_second_one_hurries_it(sig):
    # The handlers before: a shell starts a background job with SIGINT ignored (CI, nohup), so not always Python's.
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with StopSignals() as signals:
        with pytest.raises(Interrupted) as e:
            os.kill(os.getpid(), sig)
            wait_for(lambda: False, timeout_s=5.0)  # the handler raises before this deadline
        assert e.value.signum == sig and not signals.hurry.is_set()
        os.kill(os.getpid(), sig)  # while the roles are being stopped: no second raise, the grace is cut short
        wait_for(signals.hurry.is_set, timeout_s=5.0)
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed raise, on purpose
def test_a_signal_whose_raise_a_finalizer_swallowed_is_raised_by_the_next_check():
    """A handler that fires inside a `__del__` raises there, and Python drops the exception (a redis pool's
    finalizer once swallowed a Ctrl-C and the run finished with exit 0): the launcher's loop check raises it."""
    class SignalsOnCollection:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, before __del__ returns

    with StopSignals() as signals:
        signals.raise_if_received()  # nothing received: nothing raised
        SignalsOnCollection()  # collected at once (CPython refcounting): Interrupted raised in __del__, dropped
        wait_for(lambda: signals.received is not None, timeout_s=5.0)  # nothing raised here: it was swallowed
        with pytest.raises(Interrupted) as e:
            signals.raise_if_received()
        assert e.value.signum == signal.SIGINT
        with signals.deferred():
            signals.raise_if_received()  # held inside a deferred block, as the handler holds its own raise


def test_a_signal_while_a_role_starts_is_raised_once_the_role_is_recorded(tmp_path):
    """A SIGINT that lands while the supervisor starts a role waits for the start and its bookkeeping, so the
    launcher's stop reaches that role too (raised inside Popen it once left a role started but unrecorded)."""
    with StopSignals() as signals:
        @contextlib.contextmanager
        def guard_with_a_signal():
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGINT)  # arrives at the start of the guarded block
                yield

        with Supervisor(tmp_path / "logs", spawn_guard=guard_with_a_signal) as sup:
            with pytest.raises(Interrupted) as e:
                sup.start("student-actor", "no-such-command")
            assert e.value.signum == signal.SIGINT and signals.received == signal.SIGINT
            assert [r.name for r in sup.roles] == ["student-actor"] and sup.roles[0].proc is not None
            sup.terminate_all(grace_s=5.0)
            assert sup.roles[0].proc.poll() is not None


def test_the_message_names_the_stall_or_the_gone_role_then_the_counters_and_the_log(tmp_path):
    from afd_async.launch.watchdog import describe_stall

    status = {"pairs_written": "8", "d_version": "3", "student_steps": "1"}
    tail = lambda name: "\n".join(f"{name} line {i}" for i in range(20))  # noqa: E731
    text = describe_stall(stall(status), idle_s=300.4, timeout_s=300.0, status=status, steps=4, log_dir=tmp_path, tail=tail)
    lines = text.splitlines()
    assert lines[0].startswith("no progress for 300s (train.stall_timeout_s=300): the student-learner waits for ")
    assert lines[1:3] == ["  progress: pairs 8 | D v3 | student steps 1/4", f"  last lines of {tmp_path}/student-learner.log:"]
    assert lines[3:15] == [f"    student-learner line {i}" for i in range(8, 20)]
    assert lines[15] == f"  see also: {tmp_path}/feeder.log, {tmp_path}/d-learner.log, {tmp_path}/student-actor.log"
    gone = describe_stall(stall(status, gone={"feeder": 0}), idle_s=2.0, timeout_s=300.0, status=status, steps=4,
                          log_dir=tmp_path, tail=tail)
    assert gone.splitlines()[0] == "the feeder exited (code 0) while the run still needs it: the other roles wait on it"


def test_an_interrupt_a_library_wrapped_is_still_the_interrupt():
    """A SIGINT during Hydra's config composition comes back as a composition error whose context is the
    Interrupted the handler raised: the launcher must stop as interrupted (exit 130), not as failed (exit 1)."""
    interrupt = Interrupted(signal.SIGINT)
    try:
        try:
            raise interrupt
        except BaseException as inner:
            raise ValueError("config composition failed") from inner
    except ValueError as wrapped:
        assert interrupt_in(wrapped) is interrupt
    try:
        try:
            raise interrupt
        finally:
            raise AttributeError("cleanup after the interrupt failed")  # context, not cause
    except AttributeError as wrapped:
        assert interrupt_in(wrapped) is interrupt
    assert interrupt_in(interrupt) is interrupt
    assert interrupt_in(RuntimeError("a real failure")) is None
