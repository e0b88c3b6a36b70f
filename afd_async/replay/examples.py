"""Small synthetic pairs for tests, benchmarks and the local smoke run."""

from __future__ import annotations

import time
from typing import Optional

import torch

from afd_async.replay.pair import Pair


def make_pair(
    i: int,
    *,
    payload_bytes: int = 4096,
    policy_version: int = 0,
    d_version: Optional[int] = None,
    pair_id: Optional[str] = None,
    latent_dtype: torch.dtype = torch.float16,
) -> Pair:
    """A deterministic pair whose two tensors take about `payload_bytes` (half each).

    Shapes: latent `(4, F, 8, 8)` in `latent_dtype`, RGB `(T, 8, 8, 3)` uint8.
    """
    itemsize = torch.empty((), dtype=latent_dtype).element_size()
    f = max(1, payload_bytes // 2 // (4 * 8 * 8 * itemsize))
    t = max(1, payload_bytes // 2 // (8 * 8 * 3))
    g = torch.Generator().manual_seed(i)
    return Pair(
        pair_id=pair_id or f"pair-{i}",
        prompt_id=f"prompt-{i // 2}",
        prompt=f"a ball falls {i}",
        teacher_ref=f"clip-{i // 2}",
        student_latent=torch.randn(4, f, 8, 8, generator=g).to(latent_dtype),
        student_rgb=torch.randint(0, 256, (t, 8, 8, 3), generator=g, dtype=torch.uint8),
        policy_version=policy_version,
        actor_id="actor-0",
        seed=i,
        created_at=time.time(),
        teacher_requested_at=time.time() - 1.0,
        d_version=d_version,
        teacher_meta={"provider": "local", "model": "physics", "latency_s": 0.5},
    )


def same_pair(a: Pair, b: Pair) -> bool:
    """Field-by-field equality (tensors compared exactly)."""
    return (
        a.pair_id == b.pair_id and a.prompt_id == b.prompt_id and a.prompt == b.prompt and a.teacher_ref == b.teacher_ref
        and a.policy_version == b.policy_version and a.d_version == b.d_version and a.actor_id == b.actor_id
        and a.seed == b.seed and a.created_at == b.created_at and a.teacher_requested_at == b.teacher_requested_at
        and dict(a.teacher_meta) == dict(b.teacher_meta)
        and a.student_latent.dtype == b.student_latent.dtype and torch.equal(a.student_latent, b.student_latent)
        and torch.equal(a.student_rgb, b.student_rgb)
    )
