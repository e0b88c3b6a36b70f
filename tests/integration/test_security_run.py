"""A full `afd run` with per-role Redis users (cluster.redis_acl=true), CURVE on every feed and weight socket
(cluster.curve_keys_dir) and a teacher API key of the caller's: the run still finishes, no role was refused a
Redis command it needs, a plain-TCP peer gets no weights from the student learner, and no secret (the teacher
key, any role's Redis password, any CURVE secret key) appears in any log, output file, summary, metrics.jsonl,
the launcher's console, or a Prometheus scrape of any role's metrics endpoint taken while the roles ran."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import zmq.auth

from afd_async.security.curve import client_keys
from afd_async.transport import TransportTimeout, WeightSubscriber

pytestmark = pytest.mark.slow

ROLES = ("teacher-server", "teacher-actor", "student-actor", "feeder", "d-learner", "student-learner")
REDIS_ROLES = ROLES[1:]
_PORT = re.compile(rb"metrics (?:on [0-9.]+:|:)(\d+)")


def role_processes(out: Path) -> dict[int, dict[str, str]]:
    """pid -> environment (plus `argv`) of every live role process of the run writing to `out` (Linux /proc)."""
    found = {}
    marker = f"train.output_dir={out}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            if b"afd_async.cli" not in argv or marker not in argv:
                continue
            env = dict(kv.split(b"=", 1) for kv in (d / "environ").read_bytes().split(b"\0") if b"=" in kv)
        except OSError:  # exited meanwhile
            continue
        found[int(d.name)] = {k.decode(): v.decode(errors="replace") for k, v in env.items()}
        found[int(d.name)]["argv"] = b" ".join(argv).decode(errors="replace")
    return found


def scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read()


def test_afd_run_with_acl_users_finishes_and_leaks_no_secret(tmp_path: Path) -> None:
    out = tmp_path / "run"
    teacher_key = "tk-" + secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AFD_TEACHER_API_KEY", "AFD_REDIS_"))}
    env["AFD_TEACHER_API_KEY"] = teacher_key
    console = tmp_path / "console.log"
    with console.open("wb") as con:
        proc = subprocess.Popen([sys.executable, "-m", "afd_async.cli", "run", "experiment=smoke",
                                 "cluster.redis_acl=true", f"cluster.curve_keys_dir={tmp_path / 'curve'}",
                                 f"train.output_dir={out}"],
                                stdout=con, stderr=subprocess.STDOUT, env=env)
    scrapes: dict[str, bytes] = {}
    role_env: dict[str, dict[str, str]] = {}
    probed = False
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and (len(scrapes) < len(ROLES) or len(role_env) < len(ROLES) or not probed):
            assert time.monotonic() < deadline, "the run's roles did not all come up"
            for e in role_processes(out).values():
                role_env.setdefault(e.get("AFD_ROLE_NAME", "?"), e)
            if not probed and "student-learner" in scrapes:  # its weight sockets are bound by now
                port = int(re.search(r"cluster\.student_learner_port=(\d+)", role_env["student-learner"]["argv"])[1])
                ends = f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}"
                with WeightSubscriber(*ends, curve=client_keys(tmp_path / "curve", "student-actor",
                                                               "student-learner")) as keyed:
                    keyed.wait_for_version(0, timeout_s=60)  # the learner serves weights to a key holder ...
                with WeightSubscriber(*ends) as plain, pytest.raises(TransportTimeout):
                    plain.wait_for_version(0, timeout_s=1.0)  # ... and nothing to a peer without CURVE keys
                probed = True
            for role in ROLES:
                log = out / "logs" / f"{role}.log"
                if role in scrapes or not log.is_file():
                    continue
                m = _PORT.search(log.read_bytes())
                if m:
                    try:
                        scrapes[role] = scrape(int(m.group(1)))
                    except OSError:
                        pass  # not serving yet: next round
            time.sleep(0.05)
        assert proc.wait(timeout=600) == 0, console.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert set(scrapes) == set(ROLES), f"scraped only {sorted(scrapes)} while the run was up"
    assert probed
    assert all(b"afd_" in body for body in scrapes.values())

    # each Redis role logged in as its own user with its own password; the teacher server has no Redis login
    assert {r: role_env[r].get("AFD_REDIS_USER") for r in REDIS_ROLES} == {r: f"afd-{r}" for r in REDIS_ROLES}
    assert "AFD_REDIS_PASSWORD" not in role_env["teacher-server"]
    passwords = {role_env[r]["AFD_REDIS_PASSWORD"] for r in REDIS_ROLES}
    assert len(passwords) == len(REDIS_ROLES) and all(len(p) >= 32 for p in passwords)
    assert role_env["teacher-actor"]["AFD_TEACHER_API_KEY"] == teacher_key  # the caller's key was used

    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and int(summary["status"]["pairs_written"]) >= 12
    acl = (out / "redis" / "users.acl").read_text()
    assert acl.startswith("user default off")

    curve_secrets = [zmq.auth.load_certificate(str(p))[1].decode() for p in (tmp_path / "curve").glob("*.key_secret")]
    assert len(curve_secrets) == 4

    # every byte the run left behind, and what it showed
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "metrics.jsonl" for p in files) and any(p.suffix == ".log" for p in files)
    haystacks = {str(p.relative_to(out)): p.read_bytes() for p in files}
    haystacks["<console>"] = console.read_bytes()
    haystacks.update({f"<scrape {r}>": body for r, body in scrapes.items()})
    for name, data in haystacks.items():
        assert b"NOPERM" not in data, f"{name}: a role was refused a Redis command it needs"
        for secret in (teacher_key, *passwords, *curve_secrets):
            assert secret.encode() not in data, f"a secret leaked into {name}"
