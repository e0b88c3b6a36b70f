"""Deterministic per-step seeds, so the sync oracle and the async system draw the same noise.

Every random draw of step `s` for purpose `p` comes from `step_seed(run_seed, s, p)`:
whichever process does the work (the sync loop, a student actor, a learner)
gets the same numbers, which is what makes the staleness-0 oracle test possible.
"""

from __future__ import annotations

import hashlib

import torch


def step_seed(run_seed: int, step: int, purpose: str) -> int:
    digest = hashlib.blake2b(f"{run_seed}:{step}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def step_generator(run_seed: int, step: int, purpose: str, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(step_seed(run_seed, step, purpose))
