"""ρ(D, −true physics error) during training (issue 15.2): the probe monitor ranks the student clips D was
given since the last probe by D's score and by the ground truth, and logs Spearman's ρ as
`d_probe_rho_physics`, only where the teacher has a ground truth (the embedded renderer)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from afd_async.config import load_config
from afd_async.train.batch import PairBatch
from afd_async.train.d_probe_monitor import DProbeMonitor, ProbeSet, has_ground_truth, make_probe_monitor
from afd_async.train.report import read_metrics


class ValueOracle:
    """A hand-built ground truth: a clip's true error is its mean pixel value."""

    def errors(self, videos: torch.Tensor, prompts: list[str]) -> np.ndarray:
        assert len(videos) == len(prompts)
        return videos.double().mean(dim=(1, 2, 3, 4)).numpy()


class ErrorD:
    """A D whose score is `sign` × (−true error): sign +1 ranks clips as the truth does, −1 exactly against it."""

    def __init__(self, sign: float) -> None:
        self.sign, self.calls = sign, 0

    def score(self, video: torch.Tensor, text: torch.Tensor, prompts=None) -> torch.Tensor:
        return -self.sign * video.mean(dim=(1, 2, 3, 4))


def _probe_set() -> ProbeSet:
    g = torch.Generator().manual_seed(0)
    return ProbeSet(torch.rand(2, 3, 4, 8, 8, generator=g) * 2 - 1, torch.randn(2, 4, generator=g), ["a", "b"])


def _batch(values: list[float]) -> PairBatch:
    """Student clips of constant value `values[i]` (teacher clips are zeros; D's score never reads them)."""
    n = len(values)
    student = torch.tensor(values)[:, None, None, None, None].expand(n, 3, 4, 8, 8).clone()
    return PairBatch(prompt_ids=[f"p{i}" for i in range(n)], prompts=[f"p{i}" for i in range(n)],
                     text=torch.zeros(n, 4), teacher=torch.zeros(n, 3, 4, 8, 8), student=student)


def _monitor(records: list[dict], *, every: int, oracle=ValueOracle(), **kw) -> DProbeMonitor:
    return DProbeMonitor(_probe_set(), every=every, warmup_steps=0, d_steps_per_student_step=2, seed=0,
                         sink=lambda rec, res: records.append(rec), oracle=oracle, **kw)


def _train(mon: DProbeMonitor, d: ErrorD, batches: list[PairBatch], calls_per_batch: int = 2) -> None:
    for batch in batches:
        for _ in range(calls_per_batch):  # a batch gets several D calls (the critic ratio): pooled once
            d.calls += 1
            mon.after_step(d, batch)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_rho_is_plus_one_for_d_equal_to_minus_the_error_and_minus_one_negated(sign: float) -> None:
    records: list[dict] = []
    mon, d = _monitor(records, every=6), ErrorD(sign)
    g = torch.Generator().manual_seed(1)
    batches = [_batch((torch.rand(4, generator=g) * 2 - 1).tolist()) for _ in range(3)]
    _train(mon, d, batches)  # 6 calls: one probe over the 3 batches' 12 clips
    assert [r["d_step"] for r in records] == [6]
    assert records[0]["d_probe_rho_physics"] == pytest.approx(sign)
    assert records[0]["d_probe_rho_physics_clips"] == 12
    _train(mon, d, [_batch([0.1, -0.3, 0.5, 0.2])], calls_per_batch=1)
    mon.finish(d)  # the final D ranks only the clips since the last probe
    assert records[1]["d_probe_rho_physics"] == pytest.approx(sign)
    assert records[1]["d_probe_rho_physics_clips"] == 4


def test_rho_ranks_the_latest_clips_up_to_the_cap() -> None:
    class AbsOracle(ValueOracle):  # true error |v|: D = −v ranks clips of v ≥ 0 rightly, of v < 0 wrongly
        def errors(self, videos: torch.Tensor, prompts: list[str]) -> np.ndarray:
            return np.abs(super().errors(videos, prompts))

    records: list[dict] = []
    mon = _monitor(records, every=3, oracle=AbsOracle(), rho_max_clips=5)
    # had the older clips (v < 0) been kept, ρ would be below 1; the latest 5 are 0.05..0.4
    _train(mon, ErrorD(1.0), [_batch([-0.9, -0.8, -0.7, -0.6]), _batch([-0.5, -0.4, -0.3, 0.05]),
                              _batch([0.1, 0.2, 0.3, 0.4])], calls_per_batch=1)
    assert records[0]["d_probe_rho_physics_clips"] == 5 and records[0]["d_probe_rho_physics"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rho_max_clips"):
        _monitor([], every=3, rho_max_clips=1)


def test_rho_is_none_when_undefined_and_absent_without_ground_truth() -> None:
    records: list[dict] = []
    _train(_monitor(records, every=2), ErrorD(1.0), [_batch([0.3, 0.3, 0.3])])  # equal errors: no ranking
    assert "d_probe_rho_physics" in records[0] and records[0]["d_probe_rho_physics"] is None
    no_truth: list[dict] = []
    _train(_monitor(no_truth, every=2, oracle=None), ErrorD(1.0), [_batch([0.1, 0.2, 0.3])])
    assert "d_probe_shuffled" in no_truth[0] and not any(k.startswith("d_probe_rho") for k in no_truth[0])


def test_rho_leaves_the_training_batch_and_rng_alone() -> None:
    records: list[dict] = []
    mon, d = _monitor(records, every=2), ErrorD(1.0)
    batch = _batch([0.4, -0.2, 0.7])
    before = batch.student.clone()
    rng = torch.get_rng_state()
    _train(mon, d, [batch])
    assert len(records) == 1 and torch.equal(batch.student, before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_only_the_embedded_renderer_teacher_has_ground_truth() -> None:
    assert has_ground_truth(load_config(["experiment=smoke"]))
    assert not has_ground_truth(load_config(["experiment=smoke", "teacher.server.backend=diffusers",
                                             "teacher.server.diffusers_path=/nowhere"]))
    mon = make_probe_monitor(load_config(["experiment=smoke", "train.d_probe_clips=2"]),
                             lambda prompts: torch.zeros(len(prompts), 4), "cpu", sink=lambda rec, res: None)
    assert mon is not None and mon.oracle is not None


def test_afd_sync_smoke_logs_a_finite_rho(tmp_path) -> None:
    from afd_async.train.sync_loop import SyncLoop

    cfg = load_config(["experiment=smoke", "train.d_probe_every=3", "train.d_probe_clips=2",
                       f"train.output_dir={tmp_path}"])
    SyncLoop(cfg).run(show_progress=False)
    probes = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r.get("phase") == "d_probe"]
    assert [r["d_step"] for r in probes] == [3, 6]  # 2 warm-up + 4 student steps, 1 D call each
    for r in probes:
        assert r["d_probe_rho_physics_clips"] == 3 * cfg.train.batch_size * cfg.algo.rollouts_per_prompt
        rho = r["d_probe_rho_physics"]
        assert rho is not None and math.isfinite(rho) and -1.0 <= rho <= 1.0


def test_metrics_png_plots_rho_and_skips_undefined_values(tmp_path) -> None:
    from afd_async.train.report import PLOT_KEYS, plot_metrics

    assert "d_probe_rho_physics" in PLOT_KEYS  # with the learning curves
    records = [{"step": 0, "d_loss": 0.7}, {"step": 0, "phase": "d_probe", "d_probe_rho_physics": None},
               {"step": 5, "phase": "d_probe", "d_probe_rho_physics": 0.4}]
    assert plot_metrics(records, PLOT_KEYS, tmp_path / "metrics.png").stat().st_size > 0


def test_heldout_rho_ranks_d_scores_from_before_d_trained_on_the_clips() -> None:
    """Held out (issue 15.2): D's scores of a batch taken before its first step on it. Here D ranks every new batch
    as the truth does, then, "trained" on it, turns against it: ρ on trained clips −1, held out +1."""
    records: list[dict] = []
    mon, d = _monitor(records, every=4), ErrorD(1.0)
    g = torch.Generator().manual_seed(2)
    for _ in range(2):
        batch = _batch((torch.rand(4, generator=g) * 2 - 1).tolist())
        d.sign = 1.0
        mon.before_step(d, batch)  # D before it trains on this batch
        d.sign = -1.0  # ... and after
        for _ in range(2):
            d.calls += 1
            mon.after_step(d, batch)
    assert records[0]["d_probe_rho_physics"] == pytest.approx(-1.0)
    assert records[0]["d_probe_rho_physics_heldout"] == pytest.approx(1.0)
    assert records[0]["d_probe_rho_physics_clips"] == 8
    _train(mon, d, [_batch([0.1, -0.3, 0.5, 0.2])])  # no before_step: nothing held out to rank
    mon.finish(d)
    assert records[1]["d_probe_rho_physics_heldout"] is None and records[1]["d_probe_rho_physics"] is not None
