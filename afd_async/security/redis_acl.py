"""Per-role Redis ACL users: who may run which command on which keys.

Why: one shared Redis password lets any role (or anyone who steals one role's
secret) `FLUSHALL`, delete the pair stream or rewrite the teacher journal, which
is the record of paid jobs. Each role instead logs in as its own user that can do
what its code does and nothing else. The key patterns come from `RunKeys` (run
keys `afd:{run}:*`) and the teacher's namespaces (`afd:teacher:*` for journal,
prompt queue and cache; `afd:quota:*` for the shared account quota).

Rules use Redis 7.0 ACL syntax (checked against redis-server 7.0: key
permissions `~`/`%R~`, and selectors `( ... )`, which grant a command on some
keys only). Lua scripts run with the caller's permissions, so every
`redis.call` inside `EVALSHA` is checked against the same rules.

| user | may | may not |
| --- | --- | --- |
| `afd-teacher-actor` | its own namespaces `afd:teacher:*`, `afd:quota:*` (journal, queue, cache, quota; `DEL` of its claims and liveness keys) | any run key (pairs, groups, versions), `FLUSH*`, `KEYS`, `CONFIG`, pub/sub |
| `afd-student-actor` | read run keys and teacher clips; `XADD` the pair stream; `SET` pair blobs; claim groups; `RPUSH` the teacher queue | `DEL`, `UNLINK`, `XTRIM`, `XDEL`, `EXPIRE`, `SET` on the stream, `FLUSH*`, the journal and quota |
| `afd-feeder` | consumer-group commands on the pair stream, `XTRIM` (acknowledged entries only, `replay.trim`); claims, status, dedupe buckets, dead letters; read teacher clips | `DEL`, `SET`, `EXPIRE` on the stream, `FLUSH*`, the journal, queue and quota |
| `afd-d-learner`, `afd-student-learner` | read run keys; `SET` stop and run id, the student learner also the learner version; `HSET` status | streams, any teacher key, `DEL`, `FLUSH*`; the D learner any version key |
| `afd-health` | `PING` | everything else |
| `afd-admin` | everything (the operator: `afd run`'s launcher) | |
| `default` | disabled (`afd run`); in compose the operator's login, behind `requirepass` | |

Passwords go into the ACL file as SHA-256 hashes (`#<hex>`), so the file a Redis
server reads holds no secret; each role reads its own plain password from
`AFD_REDIS_PASSWORD` or `AFD_REDIS_PASSWORD_FILE` and its user name from
`AFD_REDIS_USER`.

Two ways to load them: `afd run` (`cluster.redis_acl=true`) writes a whole ACL
file (`write_acl_file`: `default` off, `afd-admin` for the launcher) and starts
redis-server with `--aclfile`. Docker compose's `secrets-init` runs
`python -m afd_async.security.compose_secrets DIR`, which (through `init_secrets_dir`) creates (once) one
password file per role and writes `DIR/redis_users.conf`; the Redis service
`include`s it, and `default` stays the operator's login behind `requirepass`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from pathlib import Path
from typing import Mapping, Sequence

from afd_async.store.keys import RunKeys

__all__ = ["ROLES", "REDIS_ROLES", "COMPOSE_ROLES", "user_name", "role_rules", "acl_line", "acl_file_text", "write_acl_file",
           "generate_passwords", "init_secrets_dir", "password_file_name"]

REDIS_ROLES = ("teacher-actor", "student-actor", "feeder", "d-learner", "student-learner")
ROLES = (*REDIS_ROLES, "health", "admin")
TEACHER_NS = "afd:teacher"
QUOTA_NS = "afd:quota"

# Every client needs these: redis-py's connect (AUTH/HELLO), health checks (PING), script loading.
_BASE = ("+ping", "+hello", "+auth", "+select", "+echo", "+time", "+client|setname", "+client|getname",
         "+client|id", "+multi", "+exec", "+discard", "+evalsha", "+eval", "+script|load", "+script|exists")
# Reads of any kind the runtime does on the keys a role may see.
_READ = ("+get", "+mget", "+exists", "+type", "+pttl", "+ttl", "+hget", "+hmget", "+hgetall", "+hexists", "+llen",
         "+lrange", "+lindex", "+smembers", "+sismember", "+scard", "+zcard", "+zcount", "+zrange", "+zrangebyscore",
         "+zscore", "+xlen", "+xrange", "+xrevrange", "+xinfo|groups", "+xinfo|stream", "+xpending")
# What the group claims (`runtime.groups`) and the status hash need.
_CLAIMS = ("+incr", "+zadd", "+zrem", "+zremrangebyscore", "+lpush", "+rpush", "+lpop", "+rpop", "+sadd",
           "+hset", "+hincrby", "+hincrbyfloat")


def user_name(role: str) -> str:
    """The Redis user a role logs in as (`afd-<role>`)."""
    if role not in ROLES:
        raise ValueError(f"unknown Redis role {role!r}; one of {', '.join(ROLES)}")
    return f"afd-{role}"


def password_file_name(role: str) -> str:
    """Name of a role's password file in a secrets directory."""
    return f"redis_password_{role.replace('-', '_')}"


def role_rules(role: str, *, run: str = "default") -> list[str]:
    """The ACL rules (after `on #hash`) of `role` for run `run`."""
    keys = RunKeys(run)
    runk = f"afd:{run}:*"
    cache = f"{TEACHER_NS}:cache:*"
    base = ["resetkeys", "resetchannels", "-@all", *_BASE]
    if role == "admin":
        return ["~*", "&*", "+@all"]
    if role == "health":
        return ["resetkeys", "resetchannels", "-@all", "+ping", "+hello", "+auth"]
    if role == "teacher-actor":
        cmds = (*_READ, *_CLAIMS, "+set", "+del", "+expire", "+pexpire", "+lrem", "+ltrim", "+blmove", "+lmove",
                "+blpop", "+brpop", "+srem", "+xadd", "+zrangebyscore")
        return [*base, *cmds, f"~{TEACHER_NS}:*", f"~{QUOTA_NS}:*"]
    if role == "student-actor":
        # Root: reads, and scripts (declared keys need RW; each redis.call inside is checked again).
        return [*base, *_READ, f"~{runk}", f"%R~{cache}",
                f"(+xadd ~{keys.pairs})",                              # append pairs
                f"(+set ~{keys.pairs}:blob:*)",                        # their payload blobs
                f"({' '.join(_CLAIMS)} ~afd:{run}:groups:* ~{keys.status})",  # claim groups, count progress
                f"(+rpush ~{TEACHER_NS}:queue)"]                       # ask for teacher clips
    if role == "feeder":
        group = ("+xgroup|create", "+xgroup|createconsumer", "+xreadgroup", "+xack", "+xclaim", "+xautoclaim",
                 "+xtrim")
        return [*base, *_READ, *group, f"~{runk}", f"%R~{cache}",
                f"({' '.join(_CLAIMS)} ~afd:{run}:groups:* ~{keys.status})",  # re-rolls, leases, counters
                f"(+hset +expire ~{keys.pairs}:dedupe:*)",                 # pair-id dedupe buckets (replay.reader)
                f"(+xadd ~{keys.pairs}:dead)"]                             # dead letters
    if role in ("d-learner", "student-learner"):
        version = f" ~{keys.student_version}" if role == "student-learner" else ""  # L: only its learner moves it
        return [*base, *_READ, f"~{runk}",
                f"(+set{version} ~{keys.stop} ~afd:{run}:run_id)",  # run_id: SET NX, checkpoints
                f"(+hset +hincrby +hincrbyfloat ~{keys.status})"]
    raise ValueError(f"unknown Redis role {role!r}; one of {', '.join(ROLES)}")


def _hash(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def acl_line(role: str, password: str, *, run: str = "default") -> str:
    """One `user ...` line of an ACL file (the password only as its SHA-256)."""
    if not password:
        raise ValueError(f"empty Redis password for {role}")
    return " ".join(["user", user_name(role), "on", "resetpass", _hash(password), *role_rules(role, run=run)])


def acl_file_text(passwords: Mapping[str, str], *, run: str = "default") -> str:
    """A whole ACL file: `default` disabled, one user per role in `passwords`."""
    lines = ["user default off resetpass nopass resetkeys resetchannels -@all"]
    lines += [acl_line(role, pw, run=run) for role, pw in passwords.items()]
    return "\n".join(lines) + "\n"


def write_acl_file(path: str | Path, passwords: Mapping[str, str], *, run: str = "default") -> Path:
    """Write `acl_file_text` to `path` (mode 0600 unless the directory says otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(acl_file_text(passwords, run=run))
    return path


def generate_passwords(roles: Sequence[str] = ROLES) -> dict[str, str]:
    """A fresh random password (32 url-safe bytes) for each role."""
    return {role: secrets.token_urlsafe(32) for role in roles}


COMPOSE_ROLES = (*REDIS_ROLES, "health")


def init_secrets_dir(directory: str | Path, *, run: str = "default") -> list[str]:
    """Compose's secrets: create missing password files (`redis_password_<role>`, 0444), (re)write `redis_users.conf`.

    `redis_users.conf` holds `user` lines (hashes only) for the roles and the health
    check; the Redis service `include`s it next to `requirepass`, so `default` stays
    the operator's login, protected by the cluster's `redis_password`. Existing
    password files are kept, so a restarted cluster keeps its users. Returns the
    names of the files written (never their contents).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    made, passwords = [], {}
    for role in COMPOSE_ROLES:
        p = d / password_file_name(role)
        if not p.is_file() or p.stat().st_size == 0:
            p.unlink(missing_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
            made.append(p.name)
        passwords[role] = p.read_text().strip()
    conf, tmp = d / "redis_users.conf", d / "redis_users.conf.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)  # the redis container's user reads it
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(acl_line(role, pw, run=run) for role, pw in passwords.items()) + "\n")
    os.replace(tmp, conf)
    return made + [conf.name]


def _main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "init":
        for name in init_secrets_dir(argv[1]):
            print("wrote", name)
        return 0
    if len(argv) == 1 and argv[0] == "table":
        for role in ROLES:
            print(user_name(role), " ".join(role_rules(role)))
        return 0
    print("usage: python -m afd_async.security.redis_acl init DIR | table", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover - CLI
    raise SystemExit(_main(sys.argv[1:]))
