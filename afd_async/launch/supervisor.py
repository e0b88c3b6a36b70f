"""Start role processes, watch them, stop them gracefully.

A role is a child process running `python -m afd_async.cli <role> [overrides]`
with its own log file. Secrets reach children through the environment only
(never argv, which `ps` shows to every user).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence


class RoleFailed(RuntimeError):
    """A role process exited while the run still needed it."""


@dataclass
class Role:
    name: str
    command: str
    overrides: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: Optional[subprocess.Popen[bytes]] = None
    log_path: Optional[Path] = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Owns the role processes of one run. Use as a context manager: exit stops everything."""

    def __init__(self, log_dir: str | Path, *, base_env: Optional[Mapping[str, str]] = None) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.roles: list[Role] = []

    def start(self, name: str, command: str, overrides: Sequence[str] = (), env: Optional[Mapping[str, str]] = None) -> Role:
        role = Role(name, command, list(overrides), dict(env or {}))
        role.log_path = self.log_dir / f"{name}.log"
        full_env = {**self.base_env, **role.env, "PYTHONUNBUFFERED": "1", "AFD_ROLE_NAME": name}
        with role.log_path.open("ab") as log:
            role.proc = subprocess.Popen(
                [sys.executable, "-m", "afd_async.cli", command, *role.overrides],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the launcher only; it stops roles in order
            )
        self.roles.append(role)
        return role

    def check(self) -> None:
        """Raise `RoleFailed` (with the log tail) if any role has failed; a role that finished its work exits 0."""
        for role in self.roles:
            if role.proc is not None and role.proc.poll() not in (None, 0):
                raise RoleFailed(f"role {role.name} exited with code {role.proc.returncode}; last log lines:\n{self.tail(role)}")

    def tail(self, role: Role, lines: int = 20) -> str:
        if role.log_path is None or not role.log_path.is_file():
            return ""
        return "\n".join(role.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, role: Role, timeout_s: float = 20.0) -> Optional[int]:
        """SIGTERM (roles finish or hand back in-flight work), then SIGKILL after `timeout_s`."""
        if role.proc is None:
            return None
        if role.proc.poll() is None:
            role.proc.send_signal(signal.SIGTERM)
            try:
                role.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                role.proc.kill()
                role.proc.wait()
        return role.proc.returncode

    def stop_all(self, timeout_s: float = 20.0) -> dict[str, Optional[int]]:
        """Stop in reverse start order (consumers before producers before servers)."""
        return {r.name: self.stop(r, timeout_s) for r in reversed(self.roles)}

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def wait_until(predicate, *, timeout_s: float, interval_s: float = 0.1, what: str = "condition", supervisor: Optional[Supervisor] = None) -> None:
    """Poll `predicate()` until true; fail fast if a role died, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if supervisor is not None:
            supervisor.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)
