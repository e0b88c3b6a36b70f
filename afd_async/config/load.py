"""Compose the Hydra config tree and validate it into `RootConfig`.

We use Hydra's compose API rather than `@hydra.main` because `afd` has
subcommands and tests compose configs in-process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import dataclasses
import difflib
import typing

from afd_async.config.convert import ConfigError, from_dict, to_dict
from afd_async.config.root import RootConfig

_SCHEMA_NODE = "afd_schema_defaults"


def config_dir() -> Path:
    """`$AFD_CONFIG_DIR` or the repository's `configs/` folder."""
    env = os.environ.get("AFD_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "configs"
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"no config.yaml in {path}; set AFD_CONFIG_DIR to the project's configs/ folder")
    return path


def group_choices(group: str, root: Path | None = None) -> list[str]:
    """The choices of config group `group`: the YAML files under `configs/<group>/`, without `.yaml`."""
    folder = (root or config_dir()) / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def _check_group_choice(override: str) -> bool:
    """Reject `group=choice` naming no file under `configs/<group>/`; True when `override` is a group choice.

    Why here and not Hydra: `experiment` is an `optional` default (an empty overlay is the normal case), and
    Hydra silently skips an optional default whose file is missing, so `experiment=smok` ran the default
    job; for the other groups Hydra's error is a page of search paths. Every folder of `configs/` is a group.
    """
    if "=" not in override or override.startswith("~"):
        return False
    key, choice = override.lstrip("+").split("=", 1)
    root = config_dir()
    if "." in key or "@" in key or not (root / key).is_dir():
        return False
    choices = group_choices(key, root)
    if choice not in choices:
        close = difflib.get_close_matches(choice, choices, n=1)
        hint = f"; did you mean '{close[0]}'? " if close else "; "
        raise ConfigError(f"unknown {key} '{choice}'{hint}choices: {', '.join(choices)}")
    return True


def _check_override_key(override: str) -> None:
    """Reject `a.b=v` whose key the schema lacks, with a "did you mean" (before Hydra's vaguer error)."""
    if _check_group_choice(override):
        return  # a group choice, e.g. algo=sft
    if "=" not in override or override[0] in "+~":
        return
    key = override.split("=", 1)[0]
    parts = key.split(".")
    cls: Any = RootConfig
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            return  # inside a dict/list value: Hydra checks it
        hints = typing.get_type_hints(cls)
        if part not in hints:
            close = difflib.get_close_matches(part, list(hints), n=1)
            hint = f"; did you mean '{'.'.join(parts[:i] + [close[0]])}'?" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint}")
        cls = hints[part]
        args = [a for a in typing.get_args(cls) if a is not type(None)]
        if typing.get_origin(cls) is typing.Union and len(args) == 1:
            cls = args[0]


def _register_schema_defaults() -> None:
    """Put every schema default into the tree, so any field can be overridden from the command line."""
    # deferred: Hydra/OmegaConf (~0.4 s) load only when a config is composed
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=_SCHEMA_NODE, node=to_dict(RootConfig()))


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> dict[str, Any]:
    """Compose `configs/<config_name>.yaml` with Hydra overrides into a plain dict."""
    # deferred: Hydra/OmegaConf (~0.4 s) load only when a config is composed
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for o in overrides:
        _check_override_key(o)
    _register_schema_defaults()
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
