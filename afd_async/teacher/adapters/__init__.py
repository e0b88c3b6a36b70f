"""Teacher adapters: one async httpx client per provider, one registry to build them.

    client = make_client("kling", credentials=load_teacher_credentials("kling"),
                         timeout_s=30, model="kling-v1-6")
    handle = await client.submit(JobRequest(prompt="a ball bounces"))
    ...
    await client.aclose()

Every adapter implements `TeacherClient` (contract.py) and classifies errors by
the provider's own codes (see each module's docstring for the table). Where
the provider can list or look up jobs *and identify ours among them*, the
adapter also has `find_job(request, *, since=None) -> JobHandle | None`, which
resolves an `AmbiguousSubmitError` (a submit that timed out after it was sent).
None means "the provider has no such live job: resubmitting is safe", so
adapters that cannot promise that (Seedance: listed tasks carry no prompt;
Runway and fal: no listing) have no `find_job`, and the gateway waits out the
ambiguity instead. Providers with `find_job`: openai, kling, luma, replicate.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Optional

from afd_async.config.credentials import Secret, reveal
from afd_async.config.providers import ALIASES, PROVIDERS, canonical_provider
from afd_async.teacher.adapters._http import DEFAULT_MAX_BYTES, AmbiguousSubmitError, HttpAdapter, Redactor, request_key
from afd_async.teacher.contract import TeacherClient

__all__ = ["AmbiguousSubmitError", "HttpAdapter", "Redactor", "make_client", "request_key", "supports_find_job"]



def make_client(
    provider: str,
    *,
    base_url: Optional[str] = None,
    credentials: Optional[Mapping[str, "str | Secret"]] = None,
    timeout_s: float = 30.0,
    model: str = "",
    max_bytes: int = DEFAULT_MAX_BYTES,
    **options: Any,
) -> TeacherClient:
    """Build the adapter for `provider`.

    Args:
        provider: one of `config.providers.PROVIDERS` or an alias ("local", "seedance", "ark", "modelark").
        base_url: API root; None takes the provider's public default (tests point it at an emulator).
        credentials: {"api_key"} or, for Kling, {"access_key", "secret_key"}; str or `Secret`
            values (see `afd_async.config.credentials.load_teacher_credentials`).
        timeout_s: per-request timeout (connect is capped at 10 s).
        model: default model when a `JobRequest` names none.
        max_bytes: download cap; a larger result fails with CORRUPT_RESULT.
        **options: adapter-specific keywords (e.g. Replicate `cancel_after`, Runway `endpoint`).
    """
    name = canonical_provider(provider)
    if name not in PROVIDERS:
        raise ValueError(f"unknown teacher provider {provider!r}; known: {sorted(PROVIDERS) + sorted(ALIASES)}")
    module, cls_name, default_url = PROVIDERS[name]
    url = base_url or default_url
    if not url:
        raise ValueError(f"provider {provider!r} has no public default: pass base_url")
    creds = {k: reveal(v) for k, v in (credentials or {}).items()}
    kwargs: dict[str, Any] = dict(base_url=url, timeout_s=timeout_s, model=model, max_bytes=max_bytes, **options)
    if name == "kling":
        missing = [k for k in ("access_key", "secret_key") if not creds.get(k)]
        if missing:
            raise ValueError(f"kling needs credentials {missing}")
        kwargs.update(access_key=creds["access_key"], secret_key=creds["secret_key"])
    else:
        if name != "openai" and not creds.get("api_key"):
            raise ValueError(f"{provider} needs credentials['api_key']")
        kwargs["api_key"] = creds.get("api_key", "")
    if name in ("volcengine", "byteplus"):
        kwargs["provider"] = name
    cls = getattr(importlib.import_module(f"afd_async.teacher.adapters.{module}"), cls_name)
    return cls(**kwargs)


def supports_find_job(client: object) -> bool:
    """Whether this adapter can resolve an ambiguous submit by looking the job up."""
    return callable(getattr(client, "find_job", None))
