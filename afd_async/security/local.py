"""Security of `afd run`'s private cluster: per-role Redis users and the local teacher key.

`afd run` starts its own redis-server and every role. With `cluster.redis_acl=true`
it generates one password per role, writes the ACL file (hashes only) next to
the server's data, starts the server with it (the `default` user off), and hands
each role its user name and password through the environment (never argv, which
`ps` shows). The launcher itself connects as `afd-admin`.

    sec = local_security(cfg, out / "redis")
    with RedisServer(..., **sec.server_kwargs()) as srv:
        sup.start(role, role, overrides, env={..., **sec.role_env(role)})

With `cluster.redis_acl=false` (default) both return `{}` and nothing changes.
With `cluster.curve_keys_dir=DIR`, missing CURVE keypairs are created in DIR and
every feed and weight socket of the run uses them.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from afd_async.config.root import RootConfig
from afd_async.security.curve import init_keys
from afd_async.security.redis_acl import REDIS_ROLES, generate_passwords, user_name, write_acl_file

__all__ = ["LocalSecurity", "local_security", "run_teacher_key"]


@dataclass
class LocalSecurity:
    """Credentials of one `afd run`; `repr` never shows a password."""

    acl_path: Optional[Path] = None
    _passwords: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def enabled(self) -> bool:
        return self.acl_path is not None

    def server_kwargs(self) -> dict[str, str]:
        """`RedisServer` keyword arguments: the ACL file, and the admin login for its own client."""
        if not self.enabled:
            return {}
        return {"acl_file": str(self.acl_path), "username": user_name("admin"), "password": self._passwords["admin"]}

    def role_env(self, role: str) -> dict[str, str]:
        """Environment for a role process: its Redis user and password ({} for roles without Redis access)."""
        if not self.enabled or role not in REDIS_ROLES:
            return {}
        return {"AFD_REDIS_USER": user_name(role), "AFD_REDIS_PASSWORD": self._passwords[role]}


def local_security(cfg: RootConfig, redis_dir: str | Path) -> LocalSecurity:
    """Generate the run's Redis users when `cfg.cluster.redis_acl`; else a no-op `LocalSecurity`.

    With `cfg.cluster.curve_keys_dir` set, the CURVE keypairs it lacks are created
    there too (the roles load them from that directory: `security.curve`).
    """
    if cfg.cluster.curve_keys_dir:
        init_keys(cfg.cluster.curve_keys_dir)
    if not cfg.cluster.redis_acl:
        return LocalSecurity()
    passwords = generate_passwords()
    path = write_acl_file(Path(redis_dir) / "users.acl", passwords)
    return LocalSecurity(acl_path=path, _passwords=passwords)


def run_teacher_key() -> str:
    """The key the local teacher server checks: `AFD_TEACHER_API_KEY` when the caller set one, else a fresh one.

    Why take the caller's: a user (or a test) that sets a key expects the run to use
    that key, and to find it nowhere in the run's logs and outputs.
    """
    return os.environ.get("AFD_TEACHER_API_KEY") or secrets.token_urlsafe(24)


def run_webhook_secret_env() -> dict[str, str]:
    """`AFD_TEACHER_WEBHOOK_SECRET` for a run's children: nothing when the caller set it (or its `_FILE`),
    else a fresh `whsec_` secret, so the local teacher server signs completion callbacks and teacher
    actors with `teacher.callback.enabled` verify them, with no setup."""
    if os.environ.get("AFD_TEACHER_WEBHOOK_SECRET") or os.environ.get("AFD_TEACHER_WEBHOOK_SECRET_FILE"):
        return {}
    return {"AFD_TEACHER_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()}
