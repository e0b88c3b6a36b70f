"""Roles sharing one GPU: the `cluster.gpu_memory_fraction` knob, checked at config load and applied at role start."""

from __future__ import annotations

import pytest
import torch

from afd_async.config import load_config
from afd_async.config.convert import ConfigError
from afd_async.runtime.gpu_share import limit_gpu_memory, peak_field

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_experiment_wan_1_3b_shares_one_card():
    fractions = load_config(["experiment=wan_1_3b"]).cluster.gpu_memory_fraction
    assert set(fractions) == {"student-actor", "d-learner", "student-learner"} and sum(fractions.values()) <= 1


@pytest.mark.parametrize("override, why", [
    ("++cluster.gpu_memory_fraction={feeder: 0.5}", "maps a GPU role"),
    ("++cluster.gpu_memory_fraction={d-learner: 0}", r"fraction in \(0, 1\]"),
    ("++cluster.gpu_memory_fraction={d-learner: 0.6, student-learner: 0.6}", "sums to 1.2 > 1"),
])
def test_bad_fractions_say_why(override, why):
    with pytest.raises(ConfigError, match=why):
        load_config([override])


def test_no_cap_off_cuda_or_for_a_role_not_named():
    assert limit_gpu_memory({"d-learner": 0.3}, "d-learner", torch.device("cpu")) is None
    assert limit_gpu_memory({"d-learner": 0.3}, "student-actor", torch.device("cuda")) is None
    assert peak_field("d-learner") == "gpu_peak_gib:d-learner"


@needs_cuda
@pytest.mark.gpu
def test_cap_holds_on_cuda():
    """An allocation over the role's share fails although the card has room (run in a fresh process per cap)."""
    dev = torch.device("cuda")
    total = torch.cuda.get_device_properties(dev).total_memory
    try:
        assert limit_gpu_memory({"d-learner": 0.05}, "d-learner", dev) == 0.05
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(int(total * 0.1), dtype=torch.uint8, device=dev)
    finally:  # torch refuses a bare `cuda` here, as limit_gpu_memory knows
        torch.cuda.set_per_process_memory_fraction(1.0, torch.cuda.current_device())
