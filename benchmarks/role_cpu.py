"""Where the CPU went during one `afd run` (Linux `/proc`): each role's cores, and the student learner's main
thread's time on a CPU and waiting for one, over the middle of its life.

Why: the student learner's busy fraction counts its step's wall time, and on a machine with fewer cores than
busy roles a step also waits in the run queue, and so does the D step the student waits for at
`replay.d_staleness=0`. These figures say whether a wait left in the busy breakdown is the plumbing's or
the machine's (`plumbing.py` prints them under its table).

    with RoleCpu(launcher_pid) as cpu:   # samples the launcher's child processes every `period_s`
        ...                              # the run
    cpu.summary()                        # {"cores": {role: …}, "total_cores", "cpus", "student_main": {…}}

`student_main` is `/proc/<pid>/task/<pid>/schedstat` of the learner's main thread (where it steps):
`on_cpu` and `runq` (runnable, waiting for a CPU) as fractions of the window's wall time; the rest of the
window it slept (waiting for D, a batch, a lock). Not on Linux: `summary()` is empty.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

ROLES = ("teacher-server", "teacher-actor", "student-actor", "feeder", "d-learner", "student-learner")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class RoleCpu:
    """Samples the CPU time of `parent`'s child processes (the roles and their Redis) until closed.

    Args:
        parent: the `afd run` launcher's pid.
        period_s: between samples.
    """

    def __init__(self, parent: int, period_s: float = 0.5) -> None:
        self.parent, self.period_s = parent, period_s
        self.samples: list[tuple[float, dict[str, float], tuple[int, int]]] = []  # (t, cpu s per name, S main)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="role-cpu", daemon=True)

    def __enter__(self) -> RoleCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.period_s)

    def _sample(self) -> None:
        if not os.path.isdir("/proc"):
            return
        cpu: dict[str, float] = {}
        main = (0, 0)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            stat = _read(f"/proc/{pid}/stat")
            fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, …
            if len(fields) < 13 or int(fields[1]) != self.parent:
                continue
            cmd = _read(f"/proc/{pid}/cmdline").replace("\0", " ")
            name = next((r for r in ROLES if f"afd_async.cli {r}" in cmd), "redis-server" if "redis" in cmd else None)
            if name is None:
                continue
            cpu[name] = cpu.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
            if name == "student-learner":
                sched = _read(f"/proc/{pid}/task/{pid}/schedstat").split()
                if len(sched) >= 2:
                    main = (int(sched[0]), int(sched[1]))
        if cpu:
            self.samples.append((time.monotonic(), cpu, main))

    def summary(self, lo: float = 0.3, hi: float = 0.95) -> dict[str, Any]:
        """Figures over `[lo, hi]` of the student learner's sampled life (start-up and the end left out)."""
        life = [s for s in self.samples if "student-learner" in s[1]]
        if len(life) < 4:
            return {}
        t0, t1 = life[0][0], life[-1][0]
        window = [s for s in life if t0 + lo * (t1 - t0) <= s[0] <= t0 + hi * (t1 - t0)]
        if len(window) < 2:
            return {}
        (ta, ca, ma), (tb, cb, mb) = window[0], window[-1]
        wall = tb - ta
        cores = {r: round((cb[r] - ca.get(r, 0.0)) / wall, 3) for r in cb}
        return {"window_s": round(wall, 1), "cpus": os.cpu_count(), "cores": cores,
                "total_cores": round(sum(cores.values()), 3),
                "student_main": {"on_cpu": round((mb[0] - ma[0]) / 1e9 / wall, 3),
                                 "runq": round((mb[1] - ma[1]) / 1e9 / wall, 3)}}
