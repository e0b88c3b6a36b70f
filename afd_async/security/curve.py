"""ZeroMQ CURVE keys from files for the feed and weight channels.

Why: anyone who reaches a learner's weight port could otherwise pull the
student, and anyone who can bind the port first (or sit in the path) could feed
actors forged weights or learners forged batches. With CURVE every connection
is encrypted, a client talks only to a server holding the secret key that
matches the public key it was given (an impersonator's handshake fails), and a
server admits only the client public keys of the roles that belong on that
channel (ZAP, `transport._sockets.start_authenticator`).

Key directory (one keypair per role, pyzmq's certificate format from
`zmq.auth.create_certificates`):

    DIR/<role>.key          public key: may be copied to every host
    DIR/<role>.key_secret   secret key: only on the host running <role> (mode 0600)

Channels: which server role admits which client roles.

| server (binds) | sockets | clients admitted |
| --- | --- | --- |
| feeder | D feed (port), student feed (port + 1) | d-learner, student-learner |
| student-learner | student weights: announce (port), fetch (port + 1) | student-actor |
| d-learner | D weights: announce (port), fetch (port + 1) | student-learner |

`python -m afd_async.security.curve init DIR` creates missing keypairs.
Weights stay verified by hash and version on top of this (`weights_layout`),
so even a key-holding peer cannot slip a corrupted or older version past an actor.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import zmq.auth

from afd_async.config.cluster import ClusterConfig
from afd_async.transport._sockets import CurveClientKeys, CurveServerKeys

__all__ = ["CURVE_ROLES", "CHANNEL_CLIENTS", "CurveKeyError", "init_keys", "server_keys", "client_keys",
           "cluster_server_keys", "cluster_client_keys"]

CURVE_ROLES = ("feeder", "student-learner", "d-learner", "student-actor")
CHANNEL_CLIENTS: dict[str, tuple[str, ...]] = {
    "feeder": ("d-learner", "student-learner"),
    "student-learner": ("student-actor",),
    "d-learner": ("student-learner",),
}


class CurveKeyError(RuntimeError):
    """A key file is missing, unreadable or holds no key. Names the path, never key material."""


def init_keys(directory: str | Path, roles: Sequence[str] = CURVE_ROLES) -> list[str]:
    """Create the keypairs of `roles` that `directory` lacks; returns the roles created."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    made = []
    for role in roles:
        if (d / f"{role}.key_secret").is_file():
            continue
        zmq.auth.create_certificates(str(d), role)
        os.chmod(d / f"{role}.key_secret", 0o600)
        made.append(role)
    return made


def _load(directory: Path, role: str, *, secret: bool) -> tuple[bytes, Optional[bytes]]:
    path = directory / (f"{role}.key_secret" if secret else f"{role}.key")
    if not path.is_file():
        raise CurveKeyError(f"CURVE key file {path} is missing (create keys with "
                            f"`python -m afd_async.security.curve init {directory}`)")
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as e:
        raise CurveKeyError(f"CURVE key file {path} is unreadable ({type(e).__name__})") from None
    if secret and not secret_key:
        raise CurveKeyError(f"CURVE key file {path} holds no secret key")
    return public, secret_key


def server_keys(directory: str | Path, role: str) -> CurveServerKeys:
    """Keys for the sockets `role` binds: its own pair, admitting only its channel's client roles."""
    if role not in CHANNEL_CLIENTS:
        raise ValueError(f"{role!r} binds no CURVE channel; servers are {', '.join(CHANNEL_CLIENTS)}")
    d = Path(directory)
    public, secret = _load(d, role, secret=True)
    allowed = [_load(d, client, secret=False)[0] for client in CHANNEL_CLIENTS[role]]
    assert secret is not None
    return CurveServerKeys(public=public, secret=secret, allowed_clients=allowed)


def client_keys(directory: str | Path, role: str, server: str) -> CurveClientKeys:
    """Keys for `role` connecting to the channel `server` binds (checks that the channel admits `role`)."""
    if role not in CHANNEL_CLIENTS.get(server, ()):
        raise ValueError(f"{role!r} is not a client of {server!r}'s channel (see CHANNEL_CLIENTS)")
    d = Path(directory)
    public, secret = _load(d, role, secret=True)
    assert secret is not None
    return CurveClientKeys(server_public=_load(d, server, secret=False)[0], public=public, secret=secret)


def cluster_server_keys(cluster: ClusterConfig, role: str) -> Optional[CurveServerKeys]:
    """`server_keys` from `cluster.curve_keys_dir`, or None (plain TCP) when it is unset."""
    return server_keys(cluster.curve_keys_dir, role) if cluster.curve_keys_dir else None


def cluster_client_keys(cluster: ClusterConfig, role: str, server: str) -> Optional[CurveClientKeys]:
    """`client_keys` from `cluster.curve_keys_dir`, or None (plain TCP) when it is unset."""
    return client_keys(cluster.curve_keys_dir, role, server) if cluster.curve_keys_dir else None


def _main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "init":
        for role in init_keys(argv[1]):
            print("created keypair", role)
        return 0
    print("usage: python -m afd_async.security.curve init DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover - CLI
    raise SystemExit(_main(sys.argv[1:]))
