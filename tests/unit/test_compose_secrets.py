"""Compose's secrets-init (`afd_async.security.compose_secrets`): everything once, kept on restart, readable by the roles."""

import stat
import subprocess
import sys
from pathlib import Path

import yaml

from afd_async.security.compose_secrets import CURVE_SUBDIR, TOKENS, init_cluster_secrets
from afd_async.security.curve import CHANNEL_CLIENTS, client_keys, server_keys
from afd_async.security.redis_acl import COMPOSE_ROLES, password_file_name

REPO = Path(__file__).resolve().parents[2]


def _contents(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_creates_every_secret_once_and_keeps_them_on_a_second_run(tmp_path: Path) -> None:
    d = tmp_path / "secrets"
    made = init_cluster_secrets(d)
    for name in (*TOKENS, *(password_file_name(r) for r in COMPOSE_ROLES), "redis_users.conf"):
        assert (d / name).stat().st_size > 0, name
    first = _contents(d)
    assert init_cluster_secrets(d) == ["redis_users.conf"]  # only the derived ACL file is rewritten
    assert _contents(d) == first
    assert set(made) >= set(TOKENS)


def test_curve_keys_work_for_every_channel_and_every_file_is_world_readable(tmp_path: Path) -> None:
    d = tmp_path / "secrets"
    init_cluster_secrets(d)
    keys = d / CURVE_SUBDIR
    for server, clients in CHANNEL_CLIENTS.items():
        s = server_keys(keys, server)
        for client in clients:
            assert client_keys(keys, client, server).server_public == s.public
    for p in d.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o004, f"{p} is not readable by the roles' user ({oct(mode)})"
        assert not mode & 0o222 or p.is_dir() and mode == 0o755, f"{p} is writable ({oct(mode)})"


def test_cli_prints_names_never_contents(tmp_path: Path) -> None:
    d = tmp_path / "secrets"
    out = subprocess.run([sys.executable, "-m", "afd_async.security.compose_secrets", str(d)],
                         capture_output=True, text=True, check=True).stdout
    assert "wrote redis_password" in out
    for p in d.rglob("*"):
        if p.is_file() and p.name != "redis_users.conf":
            for line in p.read_text().splitlines():
                secret = line.split("=", 1)[-1].strip().strip('"')
                if len(secret) >= 16:
                    assert secret not in out, p.name


def test_compose_roles_use_the_curve_keys_secrets_init_makes() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    init = compose["services"]["secrets-init"]
    assert init["entrypoint"][-1] == "afd_async.security.compose_secrets"
    (volume,) = init["volumes"]
    mount = volume.split(":")[1]
    for name in ("compose.yaml", "compose_hostnet.yaml"):
        cluster = yaml.safe_load((REPO / "configs/cluster" / name).read_text())
        assert cluster["curve_keys_dir"] == f"{mount}/{CURVE_SUBDIR}", name
