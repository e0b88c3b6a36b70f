"""Typed configuration: Hydra composes YAML from `configs/`, these dataclasses validate it.

Each config group has its schema module here; `load_config` composes and validates.
"""

from afd_async.config.load import compose_config, load_config
from afd_async.config.root import RootConfig

__all__ = ["RootConfig", "compose_config", "load_config"]
