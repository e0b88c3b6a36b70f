"""Redis over TLS (redis-server's own TLS, certificates made here with the openssl CLI): role clients from
the cluster config connect with the CA and a client certificate; a plain-text client, a client that trusts
another CA, and a client without a certificate are all refused. Combined with a per-role ACL user."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from afd_async.config.cluster import ClusterConfig
from afd_async.store.connect import async_redis_client, redis_client
from afd_async.security.redis_acl import generate_passwords, user_name, write_acl_file
from afd_async.store.redis_server import RedisServer, TlsFiles

ONCE = Retry(NoBackoff(), 0)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path, name: str) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by that CA."""
    d.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
             "-subj", f"/CN={name}-ca", cwd=d)
    for who, san in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
                 "-subj", f"/CN={name}-{who}", cwd=d)
        ext = ["-extfile", f"{who}.ext"] if san else []
        if san:
            (d / f"{who}.ext").write_text(san + "\n")
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{who}.crt", "-days", "1", *ext, cwd=d)
    return {k: str(d / k) for k in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make test certificates (Debian: apt-get install openssl)")
    d = tmp_path_factory.mktemp("tls")
    pki, other = make_pki(d / "pki", "afd"), make_pki(d / "other", "intruder")
    passwords = generate_passwords()
    write_acl_file(d / "users.acl", passwords)
    files = TlsFiles(cert=pki["server.crt"], key=pki["server.key"], ca=pki["ca.crt"], auth_clients="yes")
    with RedisServer(data_dir=str(d / "data"), tls=files, acl_file=str(d / "users.acl"),
                     username=user_name("admin"), password=passwords["admin"]) as server:
        yield server, pki, other, passwords


def role_cluster(server: RedisServer, pki: dict[str, str], **over: str) -> ClusterConfig:
    files = {"redis_tls_ca_file": pki["ca.crt"], "redis_tls_cert_file": pki["client.crt"],
             "redis_tls_key_file": pki["client.key"], **over}
    return ClusterConfig(mode="external", redis_url=f"rediss://127.0.0.1:{server.port}/0", **files)


def test_role_clients_speak_tls_with_their_acl_user(tls_server, monkeypatch) -> None:
    server, pki, _, passwords = tls_server
    monkeypatch.setenv("AFD_REDIS_USER", user_name("student-actor"))
    monkeypatch.setenv("AFD_REDIS_PASSWORD", passwords["student-actor"])
    r = redis_client(role_cluster(server, pki))
    r.xadd("afd:default:pairs", {"m": b"over tls"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.delete("afd:default:pairs")
    monkeypatch.setenv("AFD_REDIS_USER", user_name("teacher-actor"))
    monkeypatch.setenv("AFD_REDIS_PASSWORD", passwords["teacher-actor"])

    async def teacher_side() -> bytes:
        a = async_redis_client(role_cluster(server, pki))
        try:
            await a.set("afd:teacher:cache:clip:x", b"clip")
            return await a.get("afd:teacher:cache:clip:x")
        finally:
            await a.aclose()

    assert asyncio.run(teacher_side()) == b"clip"
    admin = redis.Redis(**server.client_kwargs())
    assert admin.xlen("afd:default:pairs") == 1
    assert admin.config_get("tls-port")["tls-port"] == str(server.port) and admin.config_get("port")["port"] == "0"


def test_plain_text_wrong_ca_and_certificate_less_clients_are_refused(tls_server) -> None:
    server, pki, other, passwords = tls_server
    login = {"username": user_name("admin"), "password": passwords["admin"], "retry": ONCE,
             "socket_connect_timeout": 5, "socket_timeout": 5}
    with pytest.raises(redis.ConnectionError):  # plain text to a TLS-only port
        redis.Redis(host="127.0.0.1", port=server.port, **login).ping()
    with pytest.raises(redis.ConnectionError, match="(?i)certificate verify failed"):  # trusts another CA
        redis.Redis(host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=other["ca.crt"],
                    ssl_certfile=other["client.crt"], ssl_keyfile=other["client.key"], **login).ping()
    with pytest.raises(redis.ConnectionError):  # right CA, but no client certificate (tls-auth-clients yes)
        redis.Redis(host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=pki["ca.crt"], **login).ping()
    with pytest.raises(redis.ConnectionError):  # a client certificate signed by another CA
        redis.Redis(host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=pki["ca.crt"],
                    ssl_certfile=other["client.crt"], ssl_keyfile=other["client.key"], **login).ping()
    ok = redis.Redis(host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=pki["ca.crt"],
                     ssl_certfile=pki["client.crt"], ssl_keyfile=pki["client.key"], **login)
    assert ok.ping()


def test_tls_settings_that_would_silently_send_plain_text_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="not rediss://"):
        ClusterConfig(mode="external", redis_url="redis://127.0.0.1:6390/0", redis_tls_ca_file=str(tmp_path / "ca"))
    with pytest.raises(ValueError, match="go together"):
        ClusterConfig(mode="external", redis_url="rediss://127.0.0.1:6390/0", redis_tls_cert_file="c.crt")
