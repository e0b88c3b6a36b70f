"""The shifted rectified-flow schedule and the per-chunk training-t sampler."""

from __future__ import annotations

import pytest
import torch

from afd_async.models.schedule import T_MIN, rollout_sigmas, sample_t, shift_t

STEPS = [1000, 750, 500, 250]


def test_shift_t_is_monotone_with_fixed_endpoints():
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    for s in (0.5, 1.0, 3.0, 5.0):
        out = shift_t(t, s)
        assert out[0] == 0 and out[-1] == 1
        assert torch.all(out[1:] > out[:-1])
    assert torch.equal(shift_t(t, 1.0), t)
    assert torch.all(shift_t(t[1:-1], 5.0) > t[1:-1])  # s > 1 moves levels towards noise


def test_shift_t_accepts_floats_and_rejects_bad_shift():
    assert shift_t(0.5, 5.0) == pytest.approx(2.5 / 3.0)
    with pytest.raises(ValueError):
        shift_t(0.5, 0.0)


def test_rollout_sigmas_closed_form():
    # s·t / (1 + (s−1)·t) at t = 1, 3/4, 1/2, 1/4 with s = 5
    assert rollout_sigmas(STEPS, 5.0) == pytest.approx([1.0, 15 / 16, 5 / 6, 5 / 8])
    assert rollout_sigmas(STEPS, 1.0) == pytest.approx([1.0, 0.75, 0.5, 0.25])


@pytest.mark.parametrize("bad", [[], [1000, 1000], [250, 500], [0], [1001]])
def test_rollout_sigmas_rejects_bad_timesteps(bad):
    with pytest.raises(ValueError):
        rollout_sigmas(bad, 5.0)


def test_sample_t_schedule_mode_draws_the_rollout_levels():
    g = torch.Generator().manual_seed(0)
    t = sample_t((64, 4), mode="schedule", timesteps=STEPS, shift=5.0, generator=g)
    assert t.shape == (64, 4) and t.dtype == torch.float32
    levels = torch.tensor(rollout_sigmas(STEPS, 5.0))
    assert torch.all((t[..., None] == levels).any(-1))
    assert len(torch.unique(t)) == 4  # all levels are used


def test_sample_t_shifted_uniform_range_and_bias():
    g = torch.Generator().manual_seed(0)
    t = sample_t(4096, mode="shifted_uniform", timesteps=STEPS, shift=5.0, generator=g)
    assert t.shape == (4096,)
    assert t.min() >= shift_t(T_MIN, 5.0) - 1e-6 and t.max() <= 1.0
    assert t.median() > 0.75  # shift 5 puts the median u = 0.51 at ≈ 0.84


def test_sample_t_is_reproducible_and_validates_mode():
    a = sample_t((3, 4), mode="shifted_uniform", timesteps=STEPS, shift=5.0, generator=torch.Generator().manual_seed(7))
    b = sample_t((3, 4), mode="shifted_uniform", timesteps=STEPS, shift=5.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert sample_t((2,), mode="schedule", timesteps=STEPS, shift=5.0, generator=None, device="cpu").shape == (2,)
    with pytest.raises(ValueError, match="unknown t sampling mode"):
        sample_t((2,), mode="uniform", timesteps=STEPS, shift=5.0, generator=None)  # type: ignore[arg-type]
