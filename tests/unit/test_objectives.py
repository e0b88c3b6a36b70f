"""Objectives are registered strategies (issue 16.5): the built-in rows, the refusals, and a new objective
added as one class and one `register` call that `afd sync` then trains with."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from afd_async.cli import main as afd
from afd_async.config import load_config
from afd_async.config.root import RootConfig
from afd_async.train.batch import PairBatch
from afd_async.train.objectives import (
    DScore,
    Objective,
    Rewards,
    RewardSource,
    get_objective,
    register,
    registered,
    unregister,
)

SEEN: list[torch.Tensor] = []  # the rewards the toy objective handed to the student, step by step


@dataclass(frozen=True)
class AntiD(Objective):
    """Toy objective: AFD's update with the sign of D's score flipped (rewards what D calls fake)."""

    name: str = "anti_d"
    reward: RewardSource = "custom"

    def make_rewards(self, cfg: RootConfig) -> Rewards:
        def rewards(batch: PairBatch, d_score: DScore) -> torch.Tensor:
            r = -d_score()
            SEEN.append(r.detach().clone())
            return r

        return rewards


@pytest.fixture
def anti_d():
    SEEN.clear()
    objective = register(AntiD())
    try:
        yield objective
    finally:
        unregister(objective.name)


def test_the_built_in_objectives_state_their_reward_loss_and_d_schedule() -> None:
    objectives = {name: get_objective(name) for name in registered()}
    rows = {n: (o.reward, o.loss, o.d_training, o.student_waits_for_d) for n, o in objectives.items()}
    assert rows == {
        "afd": ("d_score", "nft", "always", True),
        "frozen_d": ("d_score", "nft", "warmup_only", True),
        "oracle": ("oracle", "nft", "always", True),
        "sft": ("none", "flow_matching", "always", False),
        "gan": ("none", "terminal_gan", "always", True),
    }
    assert get_objective("frozen_d").d_lr_after_warmup(1e-4) == 0.0
    assert get_objective("afd").d_lr_after_warmup(1e-4) == 1e-4


def test_an_unknown_or_twice_registered_objective_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown objective algo.name='ppo'; registered: afd, frozen_d, gan, oracle, sft"):
        get_objective("ppo")
    with pytest.raises(ValueError, match="registered already"):
        register(Objective("afd"))
    with pytest.raises(ValueError, match="unknown loss"):
        Objective("typo", loss="nfr")  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError, match="override make_rewards"):
        Objective("bare", reward="custom").make_rewards(load_config([]))
    from afd_async.train.sync_loop import SyncLoop

    with pytest.raises(ValueError, match="unknown objective"):
        SyncLoop(load_config(["algo.name=ppo"]))


@pytest.mark.parametrize("command", ["config", "sync"])
def test_an_unknown_objective_is_a_configuration_error_of_every_command(command, capsys) -> None:
    assert afd([command, "algo.name=ppo"]) == 2
    assert capsys.readouterr().err.strip() == ("afd: configuration error: unknown objective algo.name='ppo'; "
                                               "registered: afd, frozen_d, gan, oracle, sft")


def test_the_nft_loss_refuses_an_objective_without_rewards() -> None:
    with pytest.raises(ValueError, match="objective afd needs per-clip rewards"):
        get_objective("afd").student_loss(None, None, scores=None, d=None, generator=None)  # type: ignore[arg-type]


def test_a_registered_objective_trains_in_afd_sync(anti_d, tmp_path) -> None:
    out = tmp_path / "anti_d"
    assert afd(["sync", "experiment=smoke", "text.kind=hash", "train.steps=2", "train.eval_prompts=2",
                f"algo.name={anti_d.name}", f"train.output_dir={out}"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("phase") == "train"]
    assert [r["step"] for r in steps] == [1, 2]
    assert len(SEEN) == 2  # the toy's rewards were formed once per student step ...
    for record, rewards in zip(steps, SEEN):  # ... and are what the NFT loss was weighted by
        assert record["score_mean"] == pytest.approx(float(rewards.float().mean()), rel=1e-6, abs=1e-7)
        assert "nft_loss" in record and "d_acc" in record  # the NFT loss, and D trained beside it
