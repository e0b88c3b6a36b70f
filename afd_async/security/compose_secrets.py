"""Docker compose's `secrets-init`: every secret a compose cluster needs, created once in one volume.

Why a module and not a script inside docker-compose.yml: the same code is then
tested here (`tests/unit/test_compose_secrets.py`) and a restarted cluster keeps
its secrets (existing files are never rewritten, so Redis users, the teacher key
and the CURVE keys stay valid across `docker compose up`).

What it writes (names only are ever printed):

| file | for |
| --- | --- |
| `redis_password`, `teacher_api_key`, `grafana_admin_password` | the operator's Redis login, the local teacher server's key, Grafana |
| `redis_password_<role>`, `redis_users.conf` | per-role Redis ACL users (`redis_acl.init_secrets_dir`) |
| `curve/<role>.key`, `curve/<role>.key_secret` | ZeroMQ CURVE on feed and weight channels (`curve.py`) |

Every file is mode 0444: the roles run as the image's `afd` user and the volume
is mounted read-only into each of them. That is the compose cluster's trust
boundary (one host, one volume): a role that is broken into can read the other
roles' secrets. Multi-host clusters give each host only its roles' secret files
(docs/SECURITY.md).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Sequence

from afd_async.security.curve import init_keys
from afd_async.security.redis_acl import init_secrets_dir

TOKENS = ("redis_password", "teacher_api_key", "grafana_admin_password")
CURVE_SUBDIR = "curve"


def _write_token(path: Path) -> bool:
    if path.is_file() and path.stat().st_size > 0:
        return False
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32))
    return True


def init_cluster_secrets(directory: str | Path) -> list[str]:
    """Create what `directory` lacks; returns the names written (never contents)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    made = [name for name in TOKENS if _write_token(d / name)]
    made += init_secrets_dir(d)
    curve = d / CURVE_SUBDIR
    made += [f"{CURVE_SUBDIR}/{role}" for role in init_keys(curve)]
    os.chmod(curve, 0o755)
    for key in curve.iterdir():  # init_keys makes secret keys 0600 (root's); the roles' user must read them
        os.chmod(key, 0o444)
    return made


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m afd_async.security.compose_secrets DIR", file=sys.stderr)
        return 2
    for name in init_cluster_secrets(argv[0]):
        print("wrote", name)
    return 0


if __name__ == "__main__":  # pragma: no cover - CLI
    raise SystemExit(_main(sys.argv[1:]))
