"""`RoleLabels` and `bind`: which role (and replica) a process's series belong to.

Why labels and not one registry per role: a process that plays several roles (the launcher's in-process mode,
or a test that runs a teacher actor and a feeder side by side) uses one `RoleLabels` per role, so the series
differ by label and nothing is ever registered twice.
"""

from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Optional

from afd_async.metrics.catalogue import HEARTBEAT, ROLE_INFO
from afd_async.metrics.declare import ROLES, SPECS, Role, _METRICS


@dataclass(frozen=True)
class RoleLabels:
    """The `role`/`actor_id` pair of one role in this process; call it to get a labelled child."""

    role: Role
    actor_id: str

    def __call__(self, metric: Any, **labels: str) -> Any:
        return metric.labels(role=self.role, actor_id=self.actor_id, **labels)

    def beat(self) -> None:
        """Mark one iteration of the role's loop (feeds `afd_role_heartbeat_timestamp_seconds`)."""
        self(HEARTBEAT).set_to_current_time()


def default_actor_id() -> str:
    """`AFD_ACTOR_ID` if set, else `<hostname>-<pid>` (a compose replica's hostname is its container id)."""
    return os.environ.get("AFD_ACTOR_ID") or f"{socket.gethostname()}-{os.getpid()}"


def bind(role: Role, actor_id: Optional[str] = None, *, version: str = "") -> RoleLabels:
    """Label this process as `role` and pre-create the role's series at 0.

    Pre-creating matters: `rate()` over a counter that appears only at its first increment misses that
    increment, and a dashboard panel with no series at all looks like a broken scrape.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    rl = RoleLabels(role, actor_id or default_actor_id())
    rl(ROLE_INFO, version=version or _package_version()).set(1)
    for spec in SPECS:
        if role not in spec.roles or spec.name not in _METRICS or spec.name == "afd_role_info":
            continue
        if all(lbl in spec.values for lbl in spec.labels):
            for combo in itertools.product(*(spec.values[lbl] for lbl in spec.labels)):
                rl(_METRICS[spec.name], **dict(zip(spec.labels, combo)))
    return rl


def _package_version() -> str:
    try:
        return version("afd_async")
    except Exception:
        return "unknown"
