"""Deterministic per-step seeds, so the sync oracle and the async system draw the same noise.

Every random draw of step `s` for purpose `p` comes from `step_seed(run_seed, s, p)`:
whichever process does the work (the sync loop, a student actor, a learner)
gets the same numbers, which is what makes the staleness-0 oracle test possible.
"""

from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import torch


def step_seed(run_seed: int, step: int, purpose: str) -> int:
    digest = hashlib.blake2b(f"{run_seed}:{step}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def step_generator(run_seed: int, step: int, purpose: str, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(step_seed(run_seed, step, purpose))


def randn_on(shape: Sequence[int], generator: Optional[torch.Generator], *, device: str | torch.device,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian noise `shape` drawn on the generator's device (CPU when `generator` is None: torch's global
    CPU RNG), then moved to `device`.

    Why: the per-step generators are CPU generators (`step_generator`), and a CUDA draw would give other
    numbers than a CPU one for one seed; drawing where the generator lives makes a GPU run use exactly the
    noise of a CPU run (and the sync oracle's), whatever device the model is on.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)
