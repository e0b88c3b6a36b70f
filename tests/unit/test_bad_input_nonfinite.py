"""NaN/Inf in a learner step is refused: no optimizer step, the weights stay as they were."""

from __future__ import annotations

import copy

import pytest
import torch

from afd_async.config import load_config
from afd_async.models.factory import make_discriminator, make_student, make_text_encoder
from afd_async.train.batch import PairBatch
from afd_async.train.d_update import DiscriminatorUpdater
from afd_async.train.sync_loop import make_student_updater


@pytest.fixture(scope="module")
def parts():
    cfg = load_config(["algo.name=afd"])
    torch.manual_seed(0)
    text = make_text_encoder(cfg.text, cfg.student)
    return cfg, text


def _batch(cfg, text, poison: str | None) -> PairBatch:
    s = cfg.student
    b, shape = 2, (3, s.num_frames, s.height, s.width)
    prompts = ["a red ball falls", "a pendulum swings"]
    teacher, student = torch.rand(b, *shape) * 2 - 1, torch.rand(b, *shape) * 2 - 1
    if poison == "teacher":
        teacher[0, 0, 0, 0, 0] = float("nan")
    elif poison == "student":
        student[1, 2, 1, 3, 3] = float("inf")
    return PairBatch(prompt_ids=["p0", "p1"], prompts=prompts, text=text.encode(prompts), teacher=teacher,
                     student=student)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("poison", ["teacher", "student"])
def test_discriminator_refuses_a_non_finite_step_and_keeps_its_weights(parts, poison: str) -> None:
    cfg, text = parts
    d = make_discriminator(cfg.discriminator, text.dim)
    upd = DiscriminatorUpdater(d, lr=1e-3, grad_clip=1.0)
    before = copy.deepcopy(d)
    with pytest.raises(FloatingPointError, match="discriminator grad norm is (nan|inf)"):
        upd.step(_batch(cfg, text, poison))
    assert _same(d, before) and upd.steps == 0 and not upd.opt.state  # no step, no Adam moments
    upd.step(_batch(cfg, text, None))  # the next good batch trains as usual
    assert upd.steps == 1 and not _same(d, before)
    assert all(torch.isfinite(p).all() for p in d.parameters())


def test_student_refuses_a_non_finite_loss_and_keeps_its_weights(parts) -> None:
    cfg, text = parts
    student = make_student(cfg.student, text.dim)
    upd = make_student_updater(cfg, student)
    before = copy.deepcopy(student)
    with pytest.raises(FloatingPointError, match="student loss is (nan|inf)"):
        upd.step(_batch(cfg, text, "student"), scores=torch.tensor([0.3, float("nan")]))
    assert _same(student, before) and upd.steps == 0
