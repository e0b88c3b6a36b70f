"""Cluster schema (config group `cluster`): where the roles and services run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class ClusterConfig:
    """Hosts and ports. `local` starts a private redis-server on a free loopback port."""

    mode: Literal["local", "external"] = "local"
    redis_url: Optional[str] = None  # external mode: redis://host:port/db (password from AFD_REDIS_PASSWORD)
    host: str = "127.0.0.1"  # bind address of this process's sockets
