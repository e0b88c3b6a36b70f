"""The student's rectified-flow noise schedule: shifted timesteps and training-t sampling.

Rectified flow: x_t = (1 − t)·x0 + t·ε, t ∈ [0, 1] (t = 1 is pure noise). The
few-step causal student denoises each chunk at a handful of discrete levels
(`timesteps`, on a 0..1000 grid, e.g. `[1000, 750, 500, 250]`). Like Wan and
Self-Forcing, the levels are *shifted* towards the noisy end,

    t' = s·t / (1 + (s − 1)·t),

because at high resolution/length most of the structure is decided at high
noise; with s = 5 the 4-step grid becomes `[1.0, 0.9375, 0.8333, 0.625]` and the
last step predicts x0 straight from t = 0.625.

Training draws one t per chunk (`sample_t`) either from exactly those levels
(`"schedule"`: train where you sample) or from a shifted uniform
(`"shifted_uniform"`: cover the whole path, weighted like the schedule).
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence, Union

import torch
from torch import Tensor

__all__ = ["T_MIN", "shift_t", "rollout_sigmas", "sample_t"]

T_MIN = 0.02
"""Lower end of the uniform draw in `"shifted_uniform"` mode (before shifting).

t → 0 gives a target v = ε − x0 whose x0-space error t·|v − v̂| vanishes, so
those draws carry almost no signal and only add variance; 0.02 keeps them rare.
"""

TSampling = Literal["schedule", "shifted_uniform"]


def shift_t(t: Union[Tensor, float], shift: float) -> Union[Tensor, float]:
    """Shift noise levels towards t = 1: t' = s·t / (1 + (s − 1)·t).

    Monotone increasing on [0, 1] for s > 0 with fixed endpoints 0 → 0 and 1 → 1;
    s = 1 is the identity. Works elementwise on tensors and on Python floats.

    Args:
        t: noise level(s) in [0, 1].
        shift: s > 0 (Wan / Self-Forcing use 5 for few-step students).

    Returns:
        The shifted level(s), same type (and shape) as `t`.
    """
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def rollout_sigmas(timesteps: Sequence[int], shift: float) -> list[float]:
    """The noise levels at which the rollout denoises every chunk.

    Args:
        timesteps: decreasing levels on the 0..1000 grid, e.g. `[1000, 750, 500, 250]`.
        shift: schedule shift s (see `shift_t`).

    Returns:
        `[shift_t(ts / 1000, s) for ts in timesteps]`: strictly decreasing, in (0, 1].
    """
    ts = [int(x) for x in timesteps]
    if not ts or any(not 0 < x <= 1000 for x in ts):
        raise ValueError(f"timesteps must be a non-empty list in (0, 1000], got {list(timesteps)}")
    if any(a <= b for a, b in zip(ts, ts[1:])):
        raise ValueError(f"timesteps must be strictly decreasing, got {ts}")
    return [float(shift_t(x / 1000.0, shift)) for x in ts]


def sample_t(
    shape: Union[int, Sequence[int]],
    *,
    mode: TSampling,
    timesteps: Sequence[int],
    shift: float,
    generator: Optional[torch.Generator],
    device: Union[torch.device, str, None] = None,
) -> Tensor:
    """Per-chunk training noise levels, e.g. `shape = (B, n_chunks)`.

    Modes:
        - `"schedule"`: each entry uniformly one of `rollout_sigmas(timesteps, shift)`,
          the exact levels the rollout visits (DMD / Self-Forcing style).
        - `"shifted_uniform"`: `shift_t(u, shift)` with u ~ U(T_MIN, 1): a continuous
          cover of the path with the same high-noise emphasis as the schedule
          (DiffusionNFT / SD3 style); `timesteps` is unused.

    The draw happens on the generator's device (CPU when none is given) so a
    seeded CPU generator gives the same t on any accelerator.

    Returns:
        float32 `shape` tensor on `device`, values in (0, 1].
    """
    size = (shape,) if isinstance(shape, int) else tuple(shape)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if mode == "schedule":
        sigmas = torch.tensor(rollout_sigmas(timesteps, shift), dtype=torch.float32, device=gen_device)
        idx = torch.randint(len(sigmas), size, generator=generator, device=gen_device)
        t = sigmas[idx]
    elif mode == "shifted_uniform":
        u = torch.rand(size, generator=generator, device=gen_device, dtype=torch.float32)
        t = shift_t(T_MIN + (1 - T_MIN) * u, shift)
    else:
        raise ValueError(f"unknown t sampling mode {mode!r}; expected 'schedule' or 'shifted_uniform'")
    return t.to(device) if device is not None else t
