"""Compose the Hydra config tree and validate it into `RootConfig`.

We use Hydra's compose API rather than `@hydra.main` because `afd` has
subcommands and tests compose configs in-process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from afd_async.config.convert import ConfigError, from_dict
from afd_async.config.root import RootConfig


def config_dir() -> Path:
    """`$AFD_CONFIG_DIR` or the repository's `configs/` folder."""
    env = os.environ.get("AFD_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "configs"
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"no config.yaml in {path}; set AFD_CONFIG_DIR to the project's configs/ folder")
    return path


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> dict[str, Any]:
    """Compose `configs/<config_name>.yaml` with Hydra overrides into a plain dict."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        data = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(f"config composition failed: {e}") from None
    assert isinstance(data, dict)
    return data


def load_config(overrides: Sequence[str] = (), config_name: str = "config") -> RootConfig:
    """Compose and validate. A typo or wrong type raises `ConfigError` naming the key."""
    return from_dict(RootConfig, compose_config(overrides, config_name), path="config")
