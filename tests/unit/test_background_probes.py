"""The D learner's background probes (`runtime/background_probes.py`) give the records the inline monitor gives
(the same D at the same step calls, the same pooled clips), however far training has moved on when they run, and
raise a probe's error on the learner's thread."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from afd_async.runtime.background_probes import BackgroundProbes, ProbeFailed
from afd_async.train.batch import PairBatch
from afd_async.train.d_probe_monitor import DProbeMonitor, ProbeSet
from afd_async.train.d_step import d_steps


class ValueOracle:
    """A clip's true error is its mean pixel value."""

    def errors(self, videos: torch.Tensor, prompts: list[str]):
        return videos.double().mean(dim=(1, 2, 3, 4)).numpy()


class WeightD(nn.Module):
    """Scores `w · mean(clip) + b · mean(first frame)`: what a probe reports depends on `w`, `b` at its step call."""

    def __init__(self) -> None:
        super().__init__()
        self.w, self.b = nn.Parameter(torch.ones(())), nn.Parameter(torch.zeros(()))

    def score(self, video: torch.Tensor, prompts=None, text=None) -> torch.Tensor:
        return self.w * video.mean(dim=(1, 2, 3, 4)) + self.b * video[:, :, 0].mean(dim=(1, 2, 3))


class FakeUpdater:
    """`DiscriminatorUpdater`'s surface that `d_steps` and the probes use: `d`, `calls`, `step`, `score`."""

    def __init__(self) -> None:
        self.d, self.calls = WeightD(), 0

    def step(self, batch: PairBatch) -> dict[str, float]:
        self.calls += 1
        with torch.no_grad():  # D moves every call, so a probe run later on the live D would differ
            self.d.w.copy_(torch.tensor(float((-1) ** self.calls * self.calls)))
            self.d.b.copy_(torch.tensor(0.1 * self.calls))
        return {"d_loss": float(self.calls)}

    @torch.no_grad()
    def score(self, video: torch.Tensor, text: torch.Tensor, prompts=None) -> torch.Tensor:
        return self.d.score(video, prompts=list(prompts or []), text=text).float()


def _probe_set() -> ProbeSet:
    g = torch.Generator().manual_seed(0)
    return ProbeSet(torch.rand(3, 3, 4, 8, 8, generator=g) * 2 - 1, torch.randn(3, 4, generator=g), ["a", "b", "c"])


def _batches(n: int) -> list[PairBatch]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        student = torch.rand(4, 3, 4, 8, 8, generator=g) * 2 - 1
        out.append(PairBatch(prompt_ids=[f"p{i}" for i in range(4)], prompts=[f"p{i}" for i in range(4)],
                             text=torch.zeros(4, 4), teacher=torch.zeros(4, 3, 4, 8, 8), student=student))
    return out


def _monitor(sink) -> DProbeMonitor:
    return DProbeMonitor(_probe_set(), every=3, warmup_steps=1, d_steps_per_student_step=2, seed=0, sink=sink,
                         oracle=ValueOracle())


def _run(probes, updater: FakeUpdater, batches: list[PairBatch]) -> None:
    for batch in batches:
        d_steps(updater, batch, calls=2, probes=probes)
    probes.finish(updater)


def _without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "d_probe_s"} for r in records]


def test_background_records_equal_inline_even_when_they_run_after_training_moved_on() -> None:
    batches = _batches(5)  # 10 D calls: probes after calls 3, 6, 9, and the final D (10)
    inline: list[dict] = []
    _run(_monitor(lambda rec, res: inline.append(rec)), FakeUpdater(), batches)

    background: list[dict] = []
    trained = threading.Event()

    def held_sink(rec: dict, res) -> None:
        trained.wait(timeout=60)  # the worker stays on the first probe until every step call is made
        background.append(rec)

    upd = FakeUpdater()
    probes = BackgroundProbes(_monitor(held_sink), max_pending=64)
    try:
        for batch in batches:
            d_steps(upd, batch, calls=2, probes=probes)
        assert upd.calls == 10 and background == []  # D has moved on; no probe has been written yet
        trained.set()
        probes.finish(upd)
    finally:
        trained.set()
        probes.close()
    assert [r["d_step"] for r in inline] == [3, 6, 9, 10]
    assert _without_time(background) == _without_time(inline)


def test_a_failed_probe_is_raised_on_the_learners_thread() -> None:
    def bad_sink(rec: dict, res) -> None:
        raise OSError("disk full")

    upd = FakeUpdater()
    probes = BackgroundProbes(_monitor(bad_sink))
    with pytest.raises(ProbeFailed, match="disk full"):
        _run(probes, upd, _batches(2))
    probes.close()
    with pytest.raises(ValueError, match="max_pending"):
        BackgroundProbes(_monitor(bad_sink), max_pending=0)
