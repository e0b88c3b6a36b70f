"""D probes (issue 15.2): they must flag a D that scores motion energy and pass one that knows the answer;
temporal negatives (`algo.d_temporal_negatives`) must add exactly the specified term to L_D."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from afd_async.algo.negatives import (PromptBank, drop_repeat_frames, make_negative, negatives_bt_loss, time_warp,
                                      prompt_derangement, reverse_frames, shuffle_frames)
from afd_async.config import load_config
from afd_async.config.convert import ConfigError
from afd_async.eval.d_probes import DProbeResult, error_spearman, probe_discriminator, spearman
from afd_async.models.tiny_discriminator import TinyVideoDiscriminator
from afd_async.physics import load_prompt_suite
from afd_async.train.batch import PairBatch
from afd_async.train.d_probe_monitor import DProbeMonitor, ProbeSet, make_probe_set
from afd_async.train.d_update import DiscriminatorUpdater
from afd_async.train.seeding import step_generator
from afd_async.train.sync_loop import make_discriminator_updater
from afd_async.train.teacher_source import make_teacher_source


@pytest.fixture(scope="module")
def clips() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """8 held-out teacher clips `(8, 3, 16, 32, 32)` of eval prompts (the training probe set's recipe)."""
    cfg = load_config(["experiment=smoke"])
    prompts = [p.prompt for p in load_prompt_suite("eval")[:8]]
    video = make_teacher_source(cfg).batch(prompts, [0] * len(prompts))
    text = torch.randn(len(prompts), 16, generator=torch.Generator().manual_seed(0))
    return video, text, prompts


class MotionEnergyD(nn.Module):
    """The failure mode of issue 15: the score is the clip's mean |frame difference|; the prompt is ignored."""

    def forward(self, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4))


class OracleD(nn.Module):
    """Knows every prompt's true clip: the score is minus the distance to it."""

    def __init__(self, truth: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.truth = truth

    def score(self, video: torch.Tensor, *, prompts: list[str], text: torch.Tensor) -> torch.Tensor:
        return -torch.stack([(v - self.truth[p]).abs().mean() for v, p in zip(video, prompts)])


def test_probes_flag_a_motion_energy_discriminator(clips) -> None:
    video, text, prompts = clips
    r = probe_discriminator(MotionEnergyD(), video, text, prompts)
    assert r.n_clips == 8
    assert r.shuffled <= 0.25  # shuffling adds motion energy: this D prefers the shuffled clip
    assert r.reversed == 0.5  # same frames, same energy: ties, chance
    assert r.prompt_swap == 0.5  # it ignores the prompt: ties, chance, never above


def test_probes_pass_an_oracle_discriminator(clips) -> None:
    video, text, prompts = clips
    r = probe_discriminator(OracleD(dict(zip(prompts, video))), video, text, prompts)
    assert (r.shuffled, r.reversed, r.frame_drop, r.prompt_swap) == (1.0, 1.0, 1.0, 1.0)


def test_error_spearman_ranks_rollouts_like_the_ground_truth(clips) -> None:
    video, text, prompts = clips
    g = torch.Generator().manual_seed(3)
    size = torch.linspace(0.05, 0.8, len(prompts))[torch.randperm(len(prompts), generator=g)]
    rollouts = (video + size[:, None, None, None, None] * torch.randn(video.shape, generator=g)).clamp(-1, 1)
    errors = size.numpy()  # the true error grows with the corruption
    oracle = OracleD(dict(zip(prompts, video)))
    assert error_spearman(oracle, rollouts, text, prompts, errors) == pytest.approx(1.0)
    r = probe_discriminator(oracle, video, text, prompts, rollouts=rollouts, rollout_errors=errors)
    assert r.error_spearman == pytest.approx(1.0) and r.as_dict()["d_probe_error_spearman"] == pytest.approx(1.0)
    # the motion-energy D prefers the noisiest rollouts: it ranks them against the truth
    assert error_spearman(MotionEnergyD(), rollouts, text, prompts, errors) < -0.5


def test_spearman_matches_scipy_with_ties() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 30).astype(float), rng.normal(size=30)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_probes_are_deterministic_and_touch_no_global_state(clips) -> None:
    video, text, prompts = clips
    torch.manual_seed(0)
    d = TinyVideoDiscriminator(text_dim=16, channels=8, depth=2).train()
    rng = torch.get_rng_state()
    a = probe_discriminator(d, video, text, prompts, seed=5)
    b = probe_discriminator(d, video, text, prompts, seed=5)
    assert a == b and isinstance(a, DProbeResult)
    assert torch.equal(torch.get_rng_state(), rng)  # no draw from the global RNG the training uses
    assert d.training  # put back in the mode it was in
    assert set(a.as_dict()) == {"d_probe_shuffled", "d_probe_reversed", "d_probe_frame_drop", "d_probe_prompt_swap"}
    with pytest.raises(ValueError):
        probe_discriminator(d, video, text[:4], prompts)


# ------------------------------------------------------------------------------------------- corruptions


def test_corruptions_change_time_but_keep_the_frames() -> None:
    video = torch.arange(6, dtype=torch.float32)[None, None, :, None, None].expand(3, 1, 6, 2, 2).clone()
    g = torch.Generator().manual_seed(0)
    shuffled = shuffle_frames(video, g)
    for row in shuffled[:, 0, :, 0, 0]:
        assert sorted(row.tolist()) == list(range(6)) and row.tolist() != list(range(6))
    assert reverse_frames(video)[0, 0, :, 0, 0].tolist() == [5, 4, 3, 2, 1, 0]
    stutter = drop_repeat_frames(video, g)[:, 0, :, 0, 0]
    for row in stutter:
        idx = row.tolist()
        assert len(idx) == 6 and idx[0] == 0 and idx == sorted(idx) and set(idx) != set(range(6))
    # two frames: the only non-identity order is the swap, even if the draw was the identity
    two = torch.tensor([0.0, 1.0])[None, None, :, None, None]
    assert shuffle_frames(two, torch.Generator().manual_seed(1))[0, 0, :, 0, 0].tolist() == [1.0, 0.0]


def test_time_warp_bends_the_pace_and_keeps_the_path_and_its_winner_keeps_the_pace() -> None:
    """A clip whose frame f holds the value f: resampled at time τ it holds τ, so the values are the times shown."""
    video = torch.arange(16, dtype=torch.float32)[None, None, :, None, None].expand(6, 1, 16, 2, 2).clone()
    warped, paced = time_warp(video, torch.Generator().manual_seed(0))
    w, p = warped[:, 0, :, 0, 0], paced[:, 0, :, 0, 0]
    assert torch.allclose(w[:, 0], torch.zeros(6)) and torch.allclose(w[:, -1], torch.full((6,), 15.0))  # same ends
    assert (w.diff(dim=1) >= 0).all()  # forward in time, the events in order
    speed = w.diff(dim=1)
    accelerating = speed[:, -1] > speed[:, 0]
    assert 0 < int(accelerating.sum()) < 6  # both bends drawn: slow-then-fast and fast-then-slow
    assert (speed.max(dim=1).values / speed.min(dim=1).values > 2).all()  # far from the real pace (1 a frame)
    # the winner runs at the real pace (within 1/15) and starts between frames, blended like the warped clip
    assert torch.allclose(p.diff(dim=1), p.diff(dim=1)[:, :1].expand(-1, 15))
    assert ((p.diff(dim=1) - 1).abs() <= 1 / 15 + 1e-6).all() and ((p[:, 0] > 0.29) & (p[:, 0] < 0.71)).all()
    neg = make_negative("time_warp", video, torch.zeros(6, 1), ["p"] * 6, torch.Generator().manual_seed(0))
    assert torch.equal(neg.video, warped) and torch.equal(neg.winner, paced) and bool(neg.valid.all())


def test_prompt_derangement_avoids_the_own_prompt_where_it_can() -> None:
    g = torch.Generator().manual_seed(0)
    perm, valid = prompt_derangement(["a", "b", "c", "d"], g)
    assert sorted(perm.tolist()) == [0, 1, 2, 3] and bool(valid.all())
    perm, valid = prompt_derangement(["a", "a", "b", "b"], g)  # K = 2 rollouts per prompt
    assert bool(valid.all()) and all(["a", "a", "b", "b"][j] != p for j, p in zip(perm.tolist(), "aabb"))
    _, valid = prompt_derangement(["a", "a"], g)  # one prompt: nothing to swap to
    assert not bool(valid.any())


def test_prompt_bank_gives_a_batch_of_one_prompt_wrong_prompts() -> None:
    video = torch.rand(3, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = torch.tensor([[1.0], [1.0], [1.0]])
    alone = make_negative("prompt_swap", video, text, ["a"] * 3, torch.Generator().manual_seed(0))
    assert not bool(alone.valid.any())  # K = batch size: the batch has no other prompt
    bank = PromptBank(capacity=2)
    bank.add(["a", "b", "c"], torch.tensor([[1.0], [2.0], [3.0]]))  # capacity 2: "a" is dropped, oldest first
    name, row = bank.draw("b", torch.Generator())
    assert len(bank) == 2 and name == "c" and torch.equal(row, torch.tensor([3.0]))
    neg = make_negative("prompt_swap", video, text, ["a"] * 3, torch.Generator().manual_seed(0), bank=bank)
    assert bool(neg.valid.all()) and set(neg.prompts) <= {"b", "c"}
    assert torch.equal(neg.text[:, 0], torch.tensor([{"b": 2.0, "c": 3.0}[p] for p in neg.prompts]))
    assert torch.equal(neg.video, video) and torch.equal(text, torch.ones(3, 1))  # the batch itself is untouched
    again = make_negative("prompt_swap", video, text, ["a"] * 3, torch.Generator().manual_seed(0), bank=bank)
    assert again.prompts == neg.prompts  # the draw is the generator's
    assert PromptBank().draw("a", torch.Generator()) is None
    restored = PromptBank()
    restored.load_state_dict(bank.state_dict())
    state = restored.state_dict()
    assert state["prompts"] == ["b", "c"] and torch.equal(state["text"], bank.state_dict()["text"])
    with pytest.raises(ValueError, match="2 prompts but 1 embeddings"):
        bank.add(["x", "y"], torch.zeros(1, 1))


def test_updater_swaps_prompts_across_batches_of_one_prompt() -> None:
    """K = batch size: the second call's prompt swap scores the clip for the first call's prompt, and it counts."""
    teacher = torch.tensor([0.0, 1.0])[None, None, :, None, None].expand(2, 3, 2, 4, 4).clone()
    batches = [PairBatch(prompt_ids=[p, p], prompts=[p, p], text=torch.full((2, 1), t), teacher=teacher,
                         student=torch.zeros(2, 3, 2, 4, 4)) for p, t in (("p", 0.0), ("q", 1.0))]
    upd = DiscriminatorUpdater(RisingD(), lr=0.0, grad_clip=1.0, negatives=("prompt_swap",))
    first = upd.step(batches[0])
    assert math.isnan(first["d_neg_acc_prompt_swap"])  # nothing to swap to yet
    second = upd.step(batches[1])
    # Teacher D = 1 + t(q) = 2; swapped to p's embedding: 1 + 0 = 1, so D ranks the real prompt first on both rows.
    assert second["d_neg_acc_prompt_swap"] == 1.0
    assert second["d_neg_loss"] == pytest.approx(math.log1p(math.exp(-1.0)))
    resumed = DiscriminatorUpdater(RisingD(), lr=0.0, grad_clip=1.0, negatives=("prompt_swap",))
    resumed.load_state_dict(upd.state_dict())
    assert resumed.prompt_bank.state_dict()["prompts"] == ["p", "q"]


# ------------------------------------------------------------------------------- temporal negatives in L_D


class RisingD(nn.Module):
    """score = scale·(mean of frame 1 − mean of frame 0) + text[:, 0]: hand-computable on two-frame clips."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def score(self, video: torch.Tensor, *, prompts: list[str], text: torch.Tensor) -> torch.Tensor:
        return self.scale * (video[:, :, 1].mean(dim=(1, 2, 3)) - video[:, :, 0].mean(dim=(1, 2, 3))) + text[:, 0]


def _two_frame_batch() -> PairBatch:
    teacher = torch.tensor([0.0, 1.0])[None, None, :, None, None].expand(2, 3, 2, 4, 4).clone()  # rising: D = 1 + t
    student = torch.zeros(2, 3, 2, 4, 4)  # still: D = 0 + t
    return PairBatch(prompt_ids=["p", "q"], prompts=["p", "q"], text=torch.tensor([[1.0], [0.0]]),
                     teacher=teacher, student=student)


def test_temporal_negatives_add_the_specified_term_to_the_bt_loss() -> None:
    sp = lambda z: math.log1p(math.exp(z))  # noqa: E731 - softplus(z) = −log σ(−z)
    batch = _two_frame_batch()
    off = DiscriminatorUpdater(RisingD(), lr=0.0, grad_clip=1.0).step(batch)
    assert off["d_loss"] == pytest.approx(sp(-1)) and "d_neg_loss" not in off  # default: the old loss, the old keys
    upd = DiscriminatorUpdater(RisingD(), lr=0.0, grad_clip=1.0, negatives=("shuffled", "reversed", "prompt_swap"),
                               negative_weight=0.5)
    m = upd.step(batch)
    # Teacher D = 1 + t. Shuffled and reversed (two frames: both the swap) fall: D = −1 + t, margin 2 on both rows.
    # Prompt swap exchanges t = 1 and 0: margins −1 and +1. L_D = pair + 0.5 · mean over the three kinds.
    neg = (sp(-2) + sp(-2) + (sp(1) + sp(-1)) / 2) / 3
    assert m["d_pair_loss"] == pytest.approx(sp(-1))
    assert m["d_neg_loss"] == pytest.approx(neg)
    assert m["d_loss"] == pytest.approx(sp(-1) + 0.5 * neg)
    assert (m["d_neg_acc_shuffled"], m["d_neg_acc_reversed"], m["d_neg_acc_prompt_swap"]) == (1.0, 1.0, 0.5)
    assert m["d_acc"] == off["d_acc"] == 1.0  # accuracy and the max_accuracy gate stay about (teacher, student)
    # a time warp loses to its own winner, not to the real clip: both its scores enter, D(winner) − D(warped)
    s_t, s_n, s_w = torch.tensor([3.0, 3.0]), torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.0])
    ok = torch.ones(2, dtype=torch.bool)
    assert negatives_bt_loss(s_t, [s_n], [ok], [s_w]).item() == pytest.approx((sp(-1) + sp(1)) / 2)
    assert negatives_bt_loss(s_t, [s_n], [ok]).item() == pytest.approx((sp(-3) + sp(-1)) / 2)


def test_temporal_negatives_train_d_and_come_from_the_step_seed() -> None:
    g = torch.Generator().manual_seed(1)
    batch = PairBatch(prompt_ids=list("abcd"), prompts=list("abcd"), text=torch.randn(4, 8, generator=g),
                      teacher=torch.rand(4, 3, 6, 16, 16, generator=g) * 2 - 1,
                      student=torch.rand(4, 3, 6, 16, 16, generator=g) * 2 - 1)

    def d() -> TinyVideoDiscriminator:
        torch.manual_seed(0)
        return TinyVideoDiscriminator(text_dim=8, channels=8, depth=2)

    ref = d().train()
    kinds = ("shuffled", "frame_drop", "prompt_swap", "time_warp")
    with torch.no_grad():
        s_t = ref.score(batch.teacher, prompts=batch.prompts, text=batch.text)
        s_s = ref.score(batch.student, prompts=batch.prompts, text=batch.text)
        negs = [make_negative(k, batch.teacher, batch.text, batch.prompts, step_generator(7, 0, f"d_negatives:{k}:0"))
                for k in kinds]
        s_n = [ref.score(n.video, prompts=n.prompts, text=n.text) for n in negs]
        s_w = [None if n.winner is None else ref.score(n.winner, prompts=n.prompts, text=n.text) for n in negs]
        expected = F.softplus(s_s - s_t).mean() + 0.3 * negatives_bt_loss(s_t, s_n, [n.valid for n in negs], s_w)
    runs = []
    for _ in range(2):
        upd = DiscriminatorUpdater(d(), lr=1e-3, grad_clip=1.0, noise_seed=7, negatives=kinds, negative_weight=0.3)
        runs.append([upd.step(batch)["d_loss"] for _ in range(3)])
    assert runs[0][0] == pytest.approx(expected.item(), abs=1e-6)  # the first call's draws: step_generator(7, 0, ...)
    assert runs[0] == runs[1]  # reproducible from the seed
    assert runs[0][2] < runs[0][0]  # and D learns from them


def test_a_data_parallel_d_step_pairs_each_time_warp_with_its_own_winner() -> None:
    """Under DDP every row of a D step goes through one forward (winners after the negatives): a process group of
    one must give the single-process loss, so the winners' scores are matched to the right negatives."""
    import torch.distributed as dist

    from afd_async.launch.run import reserve_port
    from afd_async.parallel.dist import DistContext

    g = torch.Generator().manual_seed(3)
    batch = PairBatch(prompt_ids=list("abcd"), prompts=list("abcd"), text=torch.randn(4, 8, generator=g),
                      teacher=torch.rand(4, 3, 6, 16, 16, generator=g) * 2 - 1,
                      student=torch.rand(4, 3, 6, 16, 16, generator=g) * 2 - 1)
    kinds = ("time_warp", "reversed")

    def d() -> TinyVideoDiscriminator:
        torch.manual_seed(0)
        return TinyVideoDiscriminator(text_dim=8, channels=8, depth=2)

    plain = DiscriminatorUpdater(d(), lr=1e-3, grad_clip=1.0, noise_seed=5, negatives=kinds).step(batch)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{reserve_port()}", rank=0, world_size=1)
    try:
        ctx = DistContext(backend="gloo")
        ddp = DiscriminatorUpdater(d(), lr=1e-3, grad_clip=1.0, noise_seed=5, negatives=kinds, dist=ctx).step(batch)
    finally:
        dist.destroy_process_group()
    for key in ("d_loss", "d_neg_loss", "d_neg_acc_time_warp", "d_neg_acc_reversed"):
        assert ddp[key] == pytest.approx(plain[key], abs=1e-5), key


def test_negatives_config_is_validated_and_reaches_the_updater() -> None:
    cfg = load_config(["experiment=smoke", "algo.d_temporal_negatives=true", "algo.d_negative_kinds=[reversed,frame_drop]",
                       "algo.d_negative_weight=0.25"])
    upd = make_discriminator_updater(cfg, RisingD())
    assert upd.negatives == ("reversed", "frame_drop") and upd.negative_weight == 0.25
    on = make_discriminator_updater(load_config(["experiment=smoke"]), RisingD())  # on by default, every kind but frame drop
    assert on.negatives == ("shuffled", "reversed", "prompt_swap")
    off = load_config(["experiment=smoke", "algo.d_temporal_negatives=false"])
    assert make_discriminator_updater(off, RisingD()).negatives == ()
    for bad in (["algo.d_negative_kinds=[backwards]"], ["algo.d_negative_weight=-1"],
                ["algo.d_temporal_negatives=true", "algo.d_negative_kinds=[]"],
                ["algo.d_negative_kinds=[reversed,reversed]"], ["train.d_probe_every=-1"],
                ["train.d_probe_clips=1"]):
        with pytest.raises(ConfigError):
            load_config(["experiment=smoke", *bad])


# ------------------------------------------------------------------------------------ probes in training


def test_monitor_probes_every_n_d_steps_and_at_the_end(clips) -> None:
    video, text, prompts = clips
    records: list[dict] = []
    mon = DProbeMonitor(ProbeSet(video[:4], text[:4], prompts[:4]), every=3, warmup_steps=2, d_steps_per_student_step=2,
                        seed=0, sink=lambda rec, res: records.append(rec))

    class Updater:  # what the monitor reads: the D step calls made, and a score
        calls = 0

        def score(self, video, text, prompts=None):
            return MotionEnergyD()(video, text)

    upd = Updater()
    for calls in range(1, 8):
        upd.calls = calls
        mon.after_step(upd)
    mon.finish(upd)  # 7 calls, last probed at 6: probes again
    upd.calls = 9
    mon.after_step(upd)
    mon.finish(upd)  # just probed: nothing more
    assert [r["d_step"] for r in records] == [3, 6, 7, 9]
    # 2 warm-up calls, then 2 per student step: call 3 trains student step 0, call 7 step 2
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert all(r["phase"] == "d_probe" and r["d_probe_shuffled"] <= 0.25 for r in records)


def test_probe_set_is_eval_prompts_and_leaves_the_global_rng_alone() -> None:
    cfg = load_config(["experiment=smoke", "train.d_probe_clips=3"])
    train = {p.prompt for p in load_prompt_suite("train")}
    rng = torch.get_rng_state()
    ps = make_probe_set(cfg, lambda prompts: torch.randn(len(prompts), 5))
    assert torch.equal(torch.get_rng_state(), rng)
    assert ps.teacher.shape == (3, 3, cfg.student.num_frames, cfg.student.height, cfg.student.width)
    assert ps.text.shape == (3, 5) and not set(ps.prompts) & train
