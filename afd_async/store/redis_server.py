"""Start a private `redis-server` on a free loopback port.

Used by the test suite, the benchmarks and `afd run` (cluster=local), so every
run has its own server that it may kill and restart without touching anyone
else's.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import redis


class RedisServerError(RuntimeError):
    """redis-server is missing or did not come up."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS Redis: the server's (or client's) certificate and key, and the CA that signed them.

    `auth_clients`: the server's `tls-auth-clients` (yes: clients must present a
    certificate signed by `ca`; optional: only if they present one; no).
    """

    cert: str
    key: str
    ca: str
    auth_clients: str = "yes"


class RedisServer:
    """A `redis-server` child process bound to 127.0.0.1 on its own port.

    Use as a context manager. `kill()` sends SIGKILL (a crash); `start()` brings
    it back on the same port and data dir, so AOF durability can be tested.

    Security options (all off by default): `password` (the default user's,
    `requirepass`), `acl_file` (users from `afd_async.security.redis_acl`; then
    `username`/`password` are the ones this object's own client logs in with),
    `tls` (the port speaks TLS only; `client_kwargs()` carries the CA and the
    client certificate).
    """

    def __init__(
        self,
        *,
        port: Optional[int] = None,
        data_dir: Optional[str] = None,
        password: Optional[str] = None,
        appendonly: bool = False,
        appendfsync: Optional[str] = None,
        extra_args: Sequence[str] = (),
        binary: str = "redis-server",
        username: Optional[str] = None,
        acl_file: Optional[str] = None,
        tls: Optional[TlsFiles] = None,
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise RedisServerError(
                f"'{binary}' not found on PATH. Install it (Debian/Ubuntu: `apt-get install redis-server`, "
                "macOS: `brew install redis`) or run `make setup`."
            )
        self.binary = path
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="afd-redis-")
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        self._password = password
        self.username = username
        self.acl_file = acl_file
        self.tls = tls
        if acl_file is not None and password is not None and username is None:
            raise ValueError("with acl_file, give the username that `password` belongs to (the default user is off)")
        self.appendonly = appendonly
        self.appendfsync = appendfsync or ("always" if appendonly else "everysec")  # always / everysec / no
        self.extra_args = list(extra_args)
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """Connection URL without the password (pass it separately; never log it)."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def client_kwargs(self) -> dict:
        kw: dict = {"host": "127.0.0.1", "port": self.port}
        if self._password:
            kw["password"] = self._password
        if self.username:
            kw["username"] = self.username
        if self.tls is not None:
            kw.update(ssl=True, ssl_ca_certs=self.tls.ca, ssl_certfile=self.tls.cert, ssl_keyfile=self.tls.key)
        return kw

    def start(self, timeout_s: float = 10.0) -> "RedisServer":
        if self.proc is not None and self.proc.poll() is None:
            return self
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.data_dir,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--protected-mode", "yes",
            "--logfile", str(Path(self.data_dir) / "redis.log"),
        ]
        if self.acl_file is not None:
            args += ["--aclfile", str(self.acl_file)]
        if self.tls is not None:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls.cert,
                     "--tls-key-file", self.tls.key, "--tls-ca-cert-file", self.tls.ca,
                     "--tls-auth-clients", self.tls.auth_clients]
        args += self.extra_args
        if self._password and self.acl_file is None:
            # Pass the password through a config file on stdin so it never shows in `ps`.
            args[1:1] = ["-"]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if self._password and self.acl_file is None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if self._password and self.acl_file is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(f"requirepass {self._password}\n".encode())
            self.proc.stdin.close()
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(**self.client_kwargs(), socket_connect_timeout=0.5)
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = Path(self.data_dir) / "redis.log"
                if log.is_file():
                    err += log.read_text(errors="replace")[-500:]
                raise RedisServerError(f"redis-server exited with code {self.proc.returncode}: {err.strip()[:500]}")
            try:
                if client.ping():
                    client.close()
                    return
            except Exception as e:  # noqa: BLE001 - any connection error means "not yet"
                last = e
            time.sleep(0.02)
        raise RedisServerError(f"redis-server on port {self.port} not ready after {timeout_s}s: {last}")

    def kill(self) -> None:
        """SIGKILL: simulates a crash (no clean shutdown, no final save)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        try:
            return self.start()
        except BaseException:  # a signal or a failed start while it comes up: no redis-server left behind
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows the password
        return f"RedisServer(port={self.port}, pid={self.proc.pid if self.proc else None})"


def _main() -> None:  # pragma: no cover - manual use
    with RedisServer() as s:
        print(s.url, os.getpid())
        input("enter to stop")


if __name__ == "__main__":  # pragma: no cover
    _main()
