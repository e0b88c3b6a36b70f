"""Teacher credentials from the environment or from secret files, never from YAML.

Why files as well as variables: Docker/Kubernetes secrets are mounted as files,
and a key in a file does not show up in `ps e` or `docker inspect`. For a
variable `NAME`, `NAME_FILE` names a file holding the value (its trailing
newline stripped). Setting both is refused: which one wins would be a guess.

Values are wrapped in `Secret`, whose `str`/`repr`/`format` are masked, so a
stray f-string, log line or config dump shows `**********`, not the key. Call
`reveal()` only where the value goes on the wire.

Variables read by `load_teacher_credentials(provider)` (generic first, then the
provider's customary name):

- api key: `AFD_TEACHER_API_KEY`; then FAL_KEY (fal), REPLICATE_API_TOKEN
  (replicate), RUNWAYML_API_SECRET (runway), LUMAAI_API_KEY (luma), ARK_API_KEY
  (seedance / Volcengine Ark and BytePlus ModelArk).
- Kling: `AFD_TEACHER_ACCESS_KEY` + `AFD_TEACHER_SECRET_KEY`, then
  KLING_ACCESS_KEY + KLING_SECRET_KEY.

`load_webhook_secret()` reads `AFD_TEACHER_WEBHOOK_SECRET` (a `whsec_...` value):
the key that signs completion callbacks (Replicate's endpoint secret, OpenAI's
webhook secret; the local teacher server signs with it and the actor verifies).
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Mapping, Optional

_MASK = "**********"


class Secret:
    """A string that does not print itself. Compare with `==` (constant time)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        """The real value: use only to build the request that needs it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret is not picklable: pass the variable name, not the value")


class CredentialError(RuntimeError):
    """A credential is missing or unreadable. The message names variables and paths, never values."""


def reveal(value: "str | Secret") -> str:
    """The plain value of a `Secret` or a str (adapters accept both)."""
    return value.reveal() if isinstance(value, Secret) else value


def load_secret(name: str, *, env: Optional[Mapping[str, str]] = None, required: bool = True) -> Optional[Secret]:
    """Read `name` from the environment, or from the file named by `name_FILE`.

    Args:
        name: the variable, e.g. "AFD_TEACHER_API_KEY".
        env: the environment to read (default `os.environ`); tests pass a dict.
        required: raise `CredentialError` when neither is set.

    Returns:
        The value as a `Secret`, or None when absent and not required.
    """
    env = os.environ if env is None else env
    direct, path = env.get(name), env.get(f"{name}_FILE")
    if direct and path:
        raise CredentialError(f"both {name} and {name}_FILE are set; set only one")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise CredentialError(f"{name}_FILE={path} could not be read ({type(e).__name__})") from None
        if not value:
            raise CredentialError(f"{name}_FILE={path} is empty")
        return Secret(value)
    if direct:
        return Secret(direct)
    if required:
        raise CredentialError(f"set {name} or {name}_FILE")
    return None


_NATIVE_KEY = {
    "fal": "FAL_KEY",
    "replicate": "REPLICATE_API_TOKEN",
    "runway": "RUNWAYML_API_SECRET",
    "luma": "LUMAAI_API_KEY",
    "seedance": "ARK_API_KEY",
    "volcengine": "ARK_API_KEY",
    "byteplus": "ARK_API_KEY",
}


def _first(names: tuple[str, ...], env: Mapping[str, str]) -> Optional[Secret]:
    for n in names:
        s = load_secret(n, env=env, required=False)
        if s is not None:
            return s
    return None


def load_teacher_credentials(provider: str, *, env: Optional[Mapping[str, str]] = None) -> dict[str, Secret]:
    """The credentials `make_client(provider, ...)` needs, from env vars or `*_FILE`s.

    Kling yields {"access_key", "secret_key"}; every other provider {"api_key"}.
    The local OpenAI-style server may run without a key: then this returns {}.
    """
    env = os.environ if env is None else env
    if provider == "kling":
        ak = _first(("AFD_TEACHER_ACCESS_KEY", "KLING_ACCESS_KEY"), env)
        sk = _first(("AFD_TEACHER_SECRET_KEY", "KLING_SECRET_KEY"), env)
        if ak is None or sk is None:
            raise CredentialError("kling needs AFD_TEACHER_ACCESS_KEY and AFD_TEACHER_SECRET_KEY (or *_FILE)")
        return {"access_key": ak, "secret_key": sk}
    names = ("AFD_TEACHER_API_KEY",) + ((_NATIVE_KEY[provider],) if provider in _NATIVE_KEY else ())
    key = _first(names, env)
    if key is None:
        if provider in ("openai", "local"):
            return {}
        raise CredentialError(f"{provider} needs one of {', '.join(names)} (or *_FILE)")
    return {"api_key": key}


WEBHOOK_SECRET_VAR = "AFD_TEACHER_WEBHOOK_SECRET"


def load_webhook_secret(*, env: Optional[Mapping[str, str]] = None, required: bool = False) -> Optional[Secret]:
    """The webhook signing secret from `AFD_TEACHER_WEBHOOK_SECRET` (or `_FILE`); None when unset and optional."""
    return load_secret(WEBHOOK_SECRET_VAR, env=env, required=required)
