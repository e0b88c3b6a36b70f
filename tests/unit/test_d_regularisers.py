"""D's opt-in regularisers against saturation: instance noise in the BT step, and skipping steps
when D is already too sure (`algo.d_instance_noise`, `algo.d_max_accuracy`); both off by default."""

from __future__ import annotations

import copy

import pytest
import torch

from afd_async.algo.losses import bt_accuracy, bt_loss
from afd_async.config import load_config
from afd_async.config.algo import AlgoConfig
from afd_async.models.tiny_discriminator import TinyVideoDiscriminator
from afd_async.train.batch import PairBatch
from afd_async.train.d_update import DiscriminatorUpdater
from afd_async.train.seeding import step_generator

PROMPTS = [f"prompt {i}" for i in range(8)]


def _d() -> TinyVideoDiscriminator:
    torch.manual_seed(0)
    return TinyVideoDiscriminator(text_dim=8, channels=8, depth=2)


def _batch(swap: bool = False) -> PairBatch:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(8, 3, 6, 16, 16, generator=g) * 2 - 1
    b = torch.rand(8, 3, 6, 16, 16, generator=g) * 2 - 1
    teacher, student = (b, a) if swap else (a, b)
    return PairBatch(prompt_ids=[str(i) for i in range(8)], prompts=PROMPTS, text=torch.randn(8, 8, generator=g),
                     teacher=teacher, student=student)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _bt(d: torch.nn.Module, teacher: torch.Tensor, student: torch.Tensor, batch: PairBatch) -> tuple[float, float]:
    d.train()
    with torch.no_grad():
        s_t, s_s = d.score(teacher, prompts=batch.prompts, text=batch.text), d.score(student, prompts=batch.prompts, text=batch.text)
    return bt_loss(s_t, s_s).item(), bt_accuracy(s_t, s_s)


def test_instance_noise_enters_the_bt_step_only_and_comes_from_the_step_seed() -> None:
    batch, d = _batch(), _d()
    ref = copy.deepcopy(d)
    upd = DiscriminatorUpdater(d, lr=1e-3, grad_clip=1.0, instance_noise=0.1, noise_seed=7)
    g = step_generator(7, 0, "d_noise:0")  # the first step call's noise: teacher's draw, then the student's
    n_t, n_s = torch.randn(tuple(batch.teacher.shape), generator=g), torch.randn(tuple(batch.student.shape), generator=g)
    noisy_loss, _ = _bt(ref, batch.teacher + 0.1 * n_t, batch.student + 0.1 * n_s, batch)
    clean_loss, _ = _bt(ref, batch.teacher, batch.student, batch)
    m = upd.step(batch)
    assert m["d_loss"] == pytest.approx(noisy_loss, abs=1e-6)
    assert abs(m["d_loss"] - clean_loss) > 1e-4  # the noise did change D's training input
    assert upd.calls == 1 and upd.steps == 1
    # scoring for advantages sees the clean clips: exactly D's own eval-mode score, every time
    d.eval()
    with torch.no_grad():
        direct = d.score(batch.student, prompts=batch.prompts, text=batch.text).float()
    assert torch.equal(upd.score(batch.student, batch.text, prompts=batch.prompts), direct)
    assert torch.equal(upd.score(batch.student, batch.text, prompts=batch.prompts), direct)


def test_instance_noise_runs_are_reproducible_from_the_seed() -> None:
    def run(seed: int) -> torch.nn.Module:
        d = _d()
        upd = DiscriminatorUpdater(d, lr=1e-3, grad_clip=1.0, instance_noise=0.1, noise_seed=seed)
        for _ in range(3):
            upd.step(_batch())
        return d

    a, b, c = run(3), run(3), run(4)
    assert _same(a, b)
    assert not _same(a, c)


def test_default_updater_trains_on_the_clean_clips_and_reports_the_old_metrics() -> None:
    batch, d = _batch(), _d()
    ref = copy.deepcopy(d)
    m = DiscriminatorUpdater(d, lr=1e-3, grad_clip=1.0).step(batch)
    assert m["d_loss"] == _bt(ref, batch.teacher, batch.student, batch)[0]  # bit-identical: no noise drawn
    assert set(m) == {"d_loss", "d_acc", "d_sigma_student", "d_p_student_wins", "d_margin", "d_grad_norm"}


def _acc_positive_batch() -> tuple[PairBatch, float]:
    """A batch on which the fresh D ranks at least one pair right (swap the roles if it ranks none)."""
    batch = _batch()
    acc = _bt(_d(), batch.teacher, batch.student, batch)[1]
    if acc == 0:
        batch = _batch(swap=True)
        acc = _bt(_d(), batch.teacher, batch.student, batch)[1]
    assert 0 < acc <= 1
    return batch, acc


def test_a_step_above_max_accuracy_is_skipped_and_keeps_d_bit_identical() -> None:
    batch, acc = _acc_positive_batch()
    d = _d()
    before = copy.deepcopy(d)
    upd = DiscriminatorUpdater(d, lr=1e-3, grad_clip=1.0, max_accuracy=0.0)  # acc > 0: skip
    m = upd.step(batch)
    assert _same(d, before) and not upd.opt.state  # no step, no Adam moments
    assert m["d_acc"] == acc and m["d_skipped"] == 1.0 and m["d_skipped_total"] == 1.0
    assert "d_grad_norm" not in m and upd.steps == 0 and upd.calls == 1
    m = upd.step(batch)
    assert m["d_skipped_total"] == 2.0 and _same(d, before)
    state = upd.state_dict()
    assert state["calls"] == 2 and state["skipped"] == 2 and state["steps"] == 0


def test_max_accuracy_is_strict_and_one_means_never_skip() -> None:
    batch, acc = _acc_positive_batch()
    for threshold in (acc, 1.0):  # acc == threshold is not above it: the step is taken
        d = _d()
        before = copy.deepcopy(d)
        upd = DiscriminatorUpdater(d, lr=1e-3, grad_clip=1.0, max_accuracy=threshold)
        m = upd.step(batch)
        assert not _same(d, before) and upd.steps == 1
        assert m.get("d_skipped", 0.0) == 0.0
    assert "d_skipped" not in m  # 1.0 is off: the metrics are the old ones


def test_config_defaults_are_off_and_bad_values_are_refused() -> None:
    cfg = load_config([])
    assert cfg.algo.d_instance_noise == 0.0 and cfg.algo.d_max_accuracy == 1.0
    cfg = load_config(["algo.d_instance_noise=0.1", "algo.d_max_accuracy=0.9"])
    assert cfg.algo.d_instance_noise == 0.1 and cfg.algo.d_max_accuracy == 0.9
    for bad in (dict(d_instance_noise=-0.1), dict(d_instance_noise=float("nan")), dict(d_max_accuracy=1.5),
                dict(d_max_accuracy=-0.1)):
        with pytest.raises(ValueError, match="d_instance_noise|d_max_accuracy"):
            AlgoConfig(**bad)


class _LinearD(torch.nn.Module):
    """score = <w, x>: ∇_x score = w for every clip, so the R1 term is ‖w‖² by hand."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, n) / n)

    def score(self, video: torch.Tensor, prompts=None, text=None) -> torch.Tensor:
        return video.flatten(1) @ self.w


def test_r1_adds_half_gamma_times_the_squared_teacher_gradient() -> None:
    batch = _batch()
    d = _LinearD(batch.teacher[0].numel())
    with torch.no_grad():
        bt = bt_loss(d.score(batch.teacher), d.score(batch.student)).item()
        w2 = d.w.pow(2).sum().item()
    m = DiscriminatorUpdater(d, lr=1e-3, grad_clip=1e9, r1_gamma=4.0).step(batch)
    assert m["d_r1"] == pytest.approx(w2, rel=1e-5)
    assert m["d_loss"] == pytest.approx(bt + 0.5 * 4.0 * w2, rel=1e-5)
    assert "d_r1" not in DiscriminatorUpdater(_LinearD(batch.teacher[0].numel()), lr=1e-3, grad_clip=1e9).step(batch)


def test_r1_keeps_the_score_surface_flat_at_the_teacher_clips() -> None:
    """Same D, same batch, 40 steps: with R1 the score's gradient at the teacher clips stays smaller."""
    batch = _batch()

    def grad_norm(gamma: float) -> float:
        d = _d()
        upd = DiscriminatorUpdater(d, lr=3e-3, grad_clip=10.0, r1_gamma=gamma)
        for _ in range(40):
            upd.step(batch)
        x = batch.teacher.clone().requires_grad_(True)
        d.train()
        (g,) = torch.autograd.grad(d.score(x, prompts=batch.prompts, text=batch.text).sum(), x)
        return g.pow(2).flatten(1).sum(1).mean().item()

    assert grad_norm(10.0) < 0.5 * grad_norm(0.0)


def test_a_negative_r1_gamma_is_refused() -> None:
    with pytest.raises(ValueError, match="d_r1_gamma"):
        AlgoConfig(d_r1_gamma=-1.0)
    assert load_config(["algo.d_r1_gamma=10"]).algo.d_r1_gamma == 10.0


def test_appearance_matching_changes_the_teacher_side_of_the_bt_step_only() -> None:
    """`algo.d_match_appearance`: D's BT loss is the one on the teacher clips matched to their student clips'
    looks (`algo/appearance.py`); the student clips, and D's scores for advantages, are the batch's own."""
    from afd_async.algo.appearance import match_appearance

    batch, d = _batch(), _d()
    ref = copy.deepcopy(d)
    m = DiscriminatorUpdater(d, lr=1e-3, grad_clip=1.0, match_appearance=True).step(batch)
    matched_loss, _ = _bt(ref, match_appearance(batch.teacher, batch.student), batch.student, batch)
    plain_loss, _ = _bt(ref, batch.teacher, batch.student, batch)
    assert m["d_loss"] == pytest.approx(matched_loss, abs=1e-6)
    assert abs(m["d_loss"] - plain_loss) > 1e-4
    assert load_config(["algo.d_match_appearance=true"]).algo.d_match_appearance is True
    assert AlgoConfig().d_match_appearance is False
