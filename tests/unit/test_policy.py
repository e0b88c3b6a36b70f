from __future__ import annotations

import torch

from afd_async.algo.policy import EMA, ema_decay_at, eta_schedule, soft_update


def test_eta_ramps_from_zero_and_caps():
    assert eta_schedule(0, rate=0.001, eta_max=0.5) == 0.0
    assert eta_schedule(100, rate=0.001, eta_max=0.5) == 0.1
    assert eta_schedule(10_000, rate=0.001, eta_max=0.5) == 0.5


def test_soft_update_endpoints_and_mix():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    soft_update(a, b, 1.0)
    assert torch.equal(a.weight, wa)
    soft_update(a, b, 0.25)
    assert torch.allclose(a.weight, 0.25 * wa + 0.75 * wb)
    soft_update(a, b, 0.0)
    assert torch.equal(a.weight, b.weight)


def test_ema_state_dict_round_trip():
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, 0.9)
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    other = EMA(torch.nn.Linear(2, 2), 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and other.decay == 0.9
    assert torch.equal(other.module.weight, ema.module.weight)
    assert not torch.equal(ema.module.weight, m.weight)


def test_eval_ema_ramps_in_so_it_tracks_early_training():
    assert [ema_decay_at(0.99, n) for n in (0, 1, 8)] == [0.1, 2 / 11, 0.5]
    assert ema_decay_at(0.99, 10_000) == 0.99
    src = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        src.weight.fill_(0.0)
    ema = EMA(src, decay=0.99)
    with torch.no_grad():
        src.weight.fill_(1.0)
    for _ in range(100):
        ema.update(src)
    # a constant 0.99 would still hold 0.99^100 = 37 % of the start; the ramp leaves a fraction of that
    start_share = float(1 - ema.module.weight.item())
    assert start_share < 0.05
