"""Teacher providers by name: what `teacher.provider` may say, and which adapter each name builds.

The table is data (module and class names, default URLs), so the config schema validates a
provider name without importing the adapters; `afd_async.teacher.adapters.make_client` builds
the client from it.
"""

from __future__ import annotations

from typing import Optional

# name → (module under afd_async.teacher.adapters, class, default base URL or None when it must be given)
PROVIDERS: dict[str, tuple[str, str, Optional[str]]] = {
    "openai": ("openai", "OpenAIVideosClient", None),
    "kling": ("kling", "KlingClient", "https://api.klingai.com"),
    "volcengine": ("seedance", "SeedanceClient", "https://ark.cn-beijing.volces.com/api/v3"),
    "byteplus": ("seedance", "SeedanceClient", "https://ark.ap-southeast.bytepluses.com/api/v3"),
    "runway": ("runway", "RunwayClient", "https://api.dev.runwayml.com"),
    "luma": ("luma", "LumaClient", "https://api.lumalabs.ai/dream-machine/v1"),
    "fal": ("fal", "FalClient", "https://queue.fal.run"),
    "replicate": ("replicate", "ReplicateClient", "https://api.replicate.com/v1"),
}
ALIASES = {"local": "openai", "seedance": "volcengine", "ark": "volcengine", "modelark": "byteplus"}


def canonical_provider(provider: str) -> str:
    """The provider name adapters stamp on jobs (and keys): aliases resolved, e.g. "local" → "openai"."""
    return ALIASES.get(provider, provider)
