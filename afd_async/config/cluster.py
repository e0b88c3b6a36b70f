"""Cluster schema (config group `cluster`): where the roles and services run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

GPU_ROLES = ("student-actor", "d-learner", "student-learner")
"""The role processes that compute on `train.device` (the teacher server, teacher actors and feeder do not)."""


@dataclass
class ClusterConfig:
    """Hosts and ports of one run.

    `local` (default): `afd run` starts a private redis-server and every role on
    127.0.0.1 with free ports. `external`: roles connect to the hosts below
    (docker compose, several machines). Each ZeroMQ role binds two consecutive
    ports, `port` and `port + 1`; secrets never live here (see `afd_async.config.credentials`).
    """

    mode: Literal["local", "external"] = "local"
    host: str = "127.0.0.1"  # bind address of this process's sockets (metrics, ZeroMQ, HTTP)
    redis_url: Optional[str] = None  # redis://host:port/db (rediss:// for TLS); user from AFD_REDIS_USER, password from AFD_REDIS_PASSWORD(_FILE), never in the URL
    redis_acl: bool = False  # afd run: its private Redis gets per-role ACL users with generated passwords (afd_async/security/redis_acl.py)
    redis_tls_ca_file: Optional[str] = None  # rediss:// only: PEM of the CA that signed the Redis server's certificate (None: system CAs)
    redis_tls_cert_file: Optional[str] = None  # rediss:// only: this client's certificate (servers with tls-auth-clients yes)
    redis_tls_key_file: Optional[str] = None  # rediss:// only: the key of redis_tls_cert_file (a file path, never the key itself)
    curve_keys_dir: Optional[str] = None  # ZeroMQ CURVE on feed and weight sockets: directory of keys (afd_async/security/curve.py); None: plain TCP
    metrics_port: Optional[int] = None  # None: the role's default port (docs/METRICS.md); 0: any free port
    metrics_port_tries: int = 1  # try this many consecutive ports (replicas sharing one network namespace)
    teacher_server_host: str = "127.0.0.1"
    teacher_server_port: int = 8000  # the local teacher server's HTTP port
    feeder_host: str = "127.0.0.1"
    feeder_port: int = 5550  # D feed on port, student feed on port + 1
    student_learner_host: str = "127.0.0.1"
    student_learner_port: int = 5560  # student weights: announcements on port, chunk fetches on port + 1
    d_learner_host: str = "127.0.0.1"
    d_learner_port: int = 5570  # discriminator weights: announcements on port, chunk fetches on port + 1
    # auto: an actor on the learner's host copies weights out of the learner's shared memory (/dev/shm), once, detected by
    # the host id in the announcements and a token in the segment; other hosts fetch over ZeroMQ. zmq: ZeroMQ for all
    weights_transport: Literal["auto", "zmq"] = "auto"
    # same-host subscribers that copy a version while the learner is still writing it (the rest wait for the commit
    # and copy after): each follower re-reads the segment at once, so many of them slow the learner's write
    # (benchmarks/bench_weights.py --max-followers). null: half the host's cores
    weights_max_followers: Optional[int] = None
    # data-parallel learners: N torchrun ranks per learner role (DDP; NCCL on GPUs, gloo on CPUs); train.batch_size must split evenly
    d_learner_ranks: int = 1  # discriminator learner processes (afd run starts them with torchrun when > 1)
    student_learner_ranks: int = 1  # student learner processes (afd run starts them with torchrun when > 1)
    learner_backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl with CUDA, gloo otherwise
    # roles sharing one GPU: role name (student-actor, d-learner, student-learner) -> the fraction of the card its
    # PyTorch allocator may hold (torch.cuda.set_per_process_memory_fraction, afd_async/runtime/gpu_share.py); a
    # capped allocator frees its cache and retries before it fails, so one role's cached peak cannot starve the
    # next. Roles not named are uncapped; {} (default): every role uncapped, as on a card of its own. From the
    # command line: ++cluster.gpu_memory_fraction={student-actor: 0.3, d-learner: 0.2} (a key given: .student-actor=0.3)
    gpu_memory_fraction: dict[str, float] = field(default_factory=dict)
    # afd run (mode=local) supervision: a role process (or the private redis-server) that dies is restarted
    max_restarts: int = 5  # crashes of one role tolerated within restart_window_s; one more fails the run (with its log tail)
    restart_window_s: float = 300.0  # sliding window for max_restarts: a role that crashed long ago has its budget back
    restart_backoff_s: float = 0.5  # wait before restarting a crashed role; doubles per crash in the window
    restart_backoff_max_s: float = 10.0  # cap of that wait
    redis_appendfsync: Literal["always", "everysec", "no"] = "everysec"  # the private redis-server's AOF fsync policy
    # (AOF is always on in afd run): a killed redis-server loses nothing at any setting (writes reach the OS before the
    # reply); on a power cut `everysec` loses up to ~1 s of writes, `no` up to ~30 s (the OS flush), `always` none but is slowest

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.restart_window_s <= 0 or self.restart_backoff_s < 0 \
                or self.restart_backoff_max_s < self.restart_backoff_s:
            raise ValueError("need max_restarts >= 0, restart_window_s > 0, 0 <= restart_backoff_s <= restart_backoff_max_s")
        if self.weights_max_followers is not None and self.weights_max_followers < 0:
            raise ValueError(f"weights_max_followers must be >= 0 or null (half the host's cores), got "
                             f"{self.weights_max_followers}")
        if self.d_learner_ranks < 1 or self.student_learner_ranks < 1:
            raise ValueError("d_learner_ranks and student_learner_ranks must be >= 1")
        for role, frac in self.gpu_memory_fraction.items():
            if role not in GPU_ROLES or not 0 < frac <= 1:
                raise ValueError(f"gpu_memory_fraction maps a GPU role ({', '.join(GPU_ROLES)}) to a fraction in "
                                 f"(0, 1], got {role}: {frac}")
        if sum(self.gpu_memory_fraction.values()) > 1 + 1e-9:
            raise ValueError(f"gpu_memory_fraction sums to {sum(self.gpu_memory_fraction.values()):g} > 1: the roles "
                             "share one card")
        if self.metrics_port_tries < 1:
            raise ValueError(f"metrics_port_tries must be >= 1, got {self.metrics_port_tries}")
        for name in ("teacher_server_port", "feeder_port", "student_learner_port", "d_learner_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65534:
                raise ValueError(f"{name} must be a TCP port (0..65534; the role also binds port + 1), got {port}")
        if self.mode == "external" and not self.redis_url:
            raise ValueError("cluster.mode=external needs cluster.redis_url (e.g. redis://redis:6379/0)")
        if self.redis_url and "@" in self.redis_url:
            raise ValueError("cluster.redis_url must not contain credentials; set AFD_REDIS_PASSWORD(_FILE) instead")
        tls = (self.redis_tls_ca_file, self.redis_tls_cert_file, self.redis_tls_key_file)
        if any(tls) and not (self.redis_url or "").startswith("rediss://"):
            raise ValueError("cluster.redis_tls_* files are set but cluster.redis_url is not rediss://: "
                             "use rediss://host:port/db so the connection is encrypted")
        if bool(self.redis_tls_cert_file) != bool(self.redis_tls_key_file):
            raise ValueError("cluster.redis_tls_cert_file and cluster.redis_tls_key_file go together")
