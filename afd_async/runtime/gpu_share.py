"""Role processes sharing one GPU: each role's allocator cap, and its peak memory in the run's status.

Why: `afd run` on one card starts the student actor and both learners as processes of their own, each
with its own PyTorch caching allocator. Uncapped, a role keeps the blocks cached at its peak and the
next role to peak runs out of memory; capped (`cluster.gpu_memory_fraction`), an allocator frees its
cache and retries inside its share before it fails. The peaks go to the status hash, so a run's report
says what each role needed and the shares can be set from measurement.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional

import torch

from afd_async.runtime.context import RoleContext

log = logging.getLogger(__name__)


def peak_field(role: str) -> str:
    """Status-hash field of a role's peak GPU memory in GiB (`torch.cuda.max_memory_allocated`)."""
    return f"gpu_peak_gib:{role}"


def limit_gpu_memory(fractions: Mapping[str, float], role: str, device: torch.device) -> Optional[float]:
    """Cap this process's allocator on `device` at `fractions[role]` of the card; returns the cap (None: uncapped).

    Called once at role start, before any model is built, so the cap holds for every allocation.
    """
    frac = fractions.get(role)
    if frac is None or device.type != "cuda":
        return None
    # torch wants an index here (`cuda` alone is refused): the current device is where `cuda` computes
    index = torch.cuda.current_device() if device.index is None else device.index
    torch.cuda.set_per_process_memory_fraction(frac, index)
    log.info("%s: GPU allocator capped at %.2f of %s", role, frac, device)
    return frac


def record_gpu_peak(rc: RoleContext, device: torch.device) -> None:
    """Write this role's peak allocated GPU memory so far to the run's status (nothing off CUDA)."""
    if device.type == "cuda":
        rc.set_status(**{peak_field(rc.role): round(torch.cuda.max_memory_allocated(device) / 2**30, 3)})
