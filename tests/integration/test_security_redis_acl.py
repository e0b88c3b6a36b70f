"""Per-role Redis ACL users on a real redis-server: each role can do its job and nothing that would destroy
someone else's (actors cannot delete or trim streams or flush; learners and the feeder cannot touch the
teacher journal; the default user is off). The full `afd run` with ACLs on is in test_security_run.py."""

from __future__ import annotations

import asyncio
import stat

import pytest
import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from afd_async.config.cluster import ClusterConfig
from afd_async.store.connect import redis_client as role_client
from afd_async.runtime.groups import GroupClaims
from afd_async.store.keys import RunKeys
from afd_async.security.redis_acl import COMPOSE_ROLES, init_secrets_dir, password_file_name, user_name
from afd_async.teacher.journal import SubmitJournal
from afd_async.store.redis_server import RedisServer

KEYS = RunKeys()
JOURNAL_KEYS = ("afd:teacher:job:k1", "afd:teacher:claim:k1", "afd:teacher:dead", "afd:teacher:journal:stats")


def login(acl_server, role: str) -> redis.Redis:
    server, passwords = acl_server
    return redis.Redis(host="127.0.0.1", port=server.port, username=user_name(role), password=passwords[role])


@pytest.fixture()
def admin(acl_server):
    r = login(acl_server, "admin")
    r.flushall()
    r.xadd(KEYS.pairs, {"m": b"pair-0"})
    r.hset("afd:teacher:job:k1", mapping={"state": "done"})
    yield r
    r.close()


def test_the_default_user_is_off(acl_server, admin) -> None:
    server, _ = acl_server
    once = {"host": "127.0.0.1", "port": server.port, "retry": Retry(NoBackoff(), 0)}  # auth errors: no retries
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(**once).get(KEYS.status)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(**once, password="guess").ping()
    with pytest.raises(redis.AuthenticationError):  # a role's name with another role's password
        redis.Redis(**once, username=user_name("feeder"), password=acl_server[1]["student-actor"]).ping()


def test_student_actor_appends_and_claims_but_cannot_delete_trim_or_flush(acl_server, admin) -> None:
    actor = login(acl_server, "student-actor")
    actor.xadd(KEYS.pairs, {"m": b"pair-1"})
    actor.set(f"{KEYS.pairs}:blob:p1", b"payload", px=60_000)
    claims = GroupClaims(actor, KEYS, total_groups=4, warmup_groups=0, staleness=1, lease_s=30.0)
    claim, _ = claims.try_claim()  # the real claim script: INCR, ZADD, ... inside EVALSHA
    assert claim is not None
    actor.rpush("afd:teacher:queue", b"request")  # asks for teacher clips
    denied = [
        lambda: actor.delete(KEYS.pairs),
        lambda: actor.unlink(KEYS.pairs),
        lambda: actor.xtrim(KEYS.pairs, maxlen=0),
        lambda: actor.xdel(KEYS.pairs, "0-1"),
        lambda: actor.expire(KEYS.pairs, 1),
        lambda: actor.set(KEYS.pairs, b"overwrites the stream"),
        lambda: actor.flushall(),
        lambda: actor.flushdb(),
        lambda: actor.keys("*"),
        lambda: actor.config_set("appendonly", "no"),
        lambda: actor.hset("afd:teacher:job:k1", "state", "failed"),
        lambda: actor.set(KEYS.student_version, 99),
    ]
    for i, call in enumerate(denied):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
            pytest.fail(f"denied call {i} went through")
    with pytest.raises(redis.ResponseError, match="can't run this command"):  # nor from a script
        actor.eval("return redis.call('DEL', KEYS[1])", 1, KEYS.pairs)
    assert admin.xlen(KEYS.pairs) == 2 and admin.hget("afd:teacher:job:k1", "state") == b"done"
    assert admin.get(KEYS.student_version) is None


def test_learners_and_feeder_cannot_read_or_write_the_teacher_journal(acl_server, admin) -> None:
    for role in ("feeder", "d-learner", "student-learner"):
        r = login(acl_server, role)
        for call in (lambda: r.hset("afd:teacher:job:k1", "state", "failed"), lambda: r.hgetall("afd:teacher:job:k1"),
                     lambda: r.delete("afd:teacher:claim:k1"), lambda: r.xadd("afd:teacher:dead", {"x": 1}),
                     lambda: r.rpush("afd:teacher:queue", b"x"), lambda: r.set("afd:quota:{acct}:limit", 1),
                     lambda: r.flushall()):
            with pytest.raises(redis.exceptions.NoPermissionError):
                call()
        r.close()

    async def journal_claim(role: str) -> str:
        client = aioredis.Redis(host="127.0.0.1", port=acl_server[0].port, username=user_name(role),
                                password=acl_server[1][role])
        try:
            async with await SubmitJournal(client, owner=role).claim("k2"):
                return "claimed"
        except redis.exceptions.NoPermissionError:
            return "denied"
        finally:
            await client.aclose()

    assert asyncio.run(journal_claim("student-learner")) == "denied"  # the real journal, as a learner
    assert asyncio.run(journal_claim("feeder")) == "denied"
    assert asyncio.run(journal_claim("teacher-actor")) == "claimed"  # its owner can
    assert admin.hget("afd:teacher:job:k1", "state") == b"done"


def test_roles_do_their_own_work(acl_server, admin) -> None:
    feeder = login(acl_server, "feeder")
    feeder.xgroup_create(KEYS.pairs, "student", id="0")
    got = feeder.xreadgroup("student", "feeder-0", {KEYS.pairs: ">"}, count=10)
    ids = [sid for sid, _ in got[0][1]]
    assert feeder.xack(KEYS.pairs, "student", *ids) == len(ids) == 1
    feeder.xtrim(KEYS.pairs, minid=ids[0])  # the feeder trims acknowledged pairs (replay.trim)
    feeder.hincrby(KEYS.status, "pairs_dropped_stale", 1)
    for call in (lambda: feeder.set(KEYS.pairs, b"x"), lambda: feeder.expire(KEYS.pairs, 1),
                 lambda: feeder.delete(KEYS.pairs), lambda: feeder.xadd(KEYS.pairs, {"m": b"forged pair"})):
        with pytest.raises(redis.exceptions.NoPermissionError):  # it trims acknowledged pairs, nothing more
            call()
    learner = login(acl_server, "student-learner")
    learner.set(KEYS.student_version, 3)
    learner.hset(KEYS.status, mapping={"student_steps": 3})
    learner.set(KEYS.stop, 1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        learner.xadd(KEYS.pairs, {"m": b"forged pair"})
    teacher = login(acl_server, "teacher-actor")
    teacher.set("afd:teacher:cache:clip:x", b"clip")
    with pytest.raises(redis.exceptions.NoPermissionError):
        teacher.delete(KEYS.pairs)
    with pytest.raises(redis.exceptions.NoPermissionError):
        learner.get("afd:teacher:cache:clip:x")  # learners never see teacher keys ...
    assert feeder.get("afd:teacher:cache:clip:x") == b"clip"  # ... the feeder reads clips (read-only)
    with pytest.raises(redis.exceptions.NoPermissionError):
        feeder.set("afd:teacher:cache:clip:x", b"forged clip")
    health = login(acl_server, "health")
    assert health.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        health.get(KEYS.status)


def test_role_client_reads_its_user_and_password_from_env_or_file(acl_server, admin, tmp_path, monkeypatch) -> None:
    server, passwords = acl_server
    cluster = ClusterConfig(mode="external", redis_url=server.url)
    monkeypatch.setenv("AFD_REDIS_USER", user_name("d-learner"))
    secret_file = tmp_path / "pw"
    secret_file.write_text(passwords["d-learner"] + "\n")
    monkeypatch.setenv("AFD_REDIS_PASSWORD_FILE", str(secret_file))
    r = role_client(cluster)
    r.set(KEYS.stop, 5)
    assert admin.get(KEYS.stop) == b"5"
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.delete(KEYS.stop)
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.set(KEYS.student_version, 5)  # learner_version L: only the student learner moves it
    admin.delete(KEYS.stop)
    secret_file.write_text("wrong")
    wrong = role_client(cluster)
    wrong.connection_pool.connection_kwargs["retry"] = Retry(NoBackoff(), 0)
    with pytest.raises(redis.AuthenticationError) as e:
        wrong.ping()
    assert passwords["d-learner"] not in str(e.value) and "wrong" not in str(e.value)


def test_compose_secrets_dir_holds_hashes_only_and_keeps_passwords(tmp_path) -> None:
    made = init_secrets_dir(tmp_path)
    assert set(made) == {password_file_name(r) for r in COMPOSE_ROLES} | {"redis_users.conf"}
    passwords = {r: (tmp_path / password_file_name(r)).read_text() for r in COMPOSE_ROLES}
    conf = (tmp_path / "redis_users.conf").read_text()
    assert all(len(p) >= 32 and p not in conf for p in passwords.values())
    assert "user default" not in conf and "afd-admin" not in conf  # default stays the operator's, behind requirepass
    assert not (tmp_path / "redis_users.conf").stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert init_secrets_dir(tmp_path) == ["redis_users.conf"]  # a restart keeps every password
    assert {r: (tmp_path / password_file_name(r)).read_text() for r in COMPOSE_ROLES} == passwords
    # as the compose Redis service loads it: requirepass for default, `include` for the role users
    with RedisServer(data_dir=str(tmp_path / "data"), password="operator-password",
                     extra_args=["--include", str(tmp_path / "redis_users.conf")]) as server:
        feeder = redis.Redis(host="127.0.0.1", port=server.port, username=user_name("feeder"),
                             password=passwords["feeder"])
        assert feeder.xlen(KEYS.pairs) == 0
        with pytest.raises(redis.exceptions.NoPermissionError):
            feeder.flushall()
        health = redis.Redis(host="127.0.0.1", port=server.port, username=user_name("health"),
                             password=passwords["health"])
        assert health.ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0)).get(KEYS.status)
