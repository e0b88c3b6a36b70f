"""Every config composes and validates; mistakes fail at start with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from afd_async.config import load_config
from afd_async.config.convert import ConfigError, from_dict, to_dict
from afd_async.config.root import RootConfig
from afd_async.train.objectives import get_objective

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GROUPS = ["student", "discriminator", "teacher", "algo", "replay", "cluster"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes(group, option):
    cfg = load_config([f"{group}={option}"])
    assert isinstance(cfg, RootConfig)


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes(experiment):
    cfg = load_config([f"experiment={experiment}"])
    assert cfg.experiment == experiment


def test_algo_options_select_the_objective():
    assert {load_config([f"algo={o}"]).algo.name for o in _options("algo")} == {"afd", "sft", "gan", "frozen_d", "oracle"}
    frozen = get_objective(load_config(["algo=frozen_d"]).algo.name)
    assert frozen.d_lr_after_warmup(5e-5) == 0.0 and get_objective("afd").d_lr_after_warmup(5e-5) == 5e-5


def test_typo_in_override_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"train\.stepz.*did you mean 'train\.steps'"):
        load_config(["train.stepz=3"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"config\.student\.dim: expected an integer"):
        load_config(["student.dim=abc"])


def test_bad_enum_value_lists_choices():
    with pytest.raises(ConfigError, match=r"algo\.t_sampling: 'uniform' is not one of"):
        load_config(["algo.t_sampling=uniform"])


def test_semantic_validation_says_why():
    with pytest.raises(ConfigError, match="multiple of chunk_frames"):
        load_config(["student.num_frames=10"])


def test_unknown_key_inside_yaml_is_rejected_with_suggestion():
    data = to_dict(RootConfig())
    data["algo"]["betta"] = 0.2
    with pytest.raises(ConfigError, match=r"config\.algo\.betta: unknown key .*did you mean 'beta'"):
        from_dict(RootConfig, data, path="config")


def test_unknown_group_option_is_an_error():
    with pytest.raises(ConfigError, match=r"^unknown algo 'ppo'; choices: afd, frozen_d, gan, oracle, sft$"):
        load_config(["algo=ppo"])


@pytest.mark.parametrize("override", ["experiment=smok", "+experiment=smok"])
def test_unknown_experiment_is_an_error_not_the_default_job(override):
    # `experiment` is an optional default, which Hydra skips silently when its file is missing (issue 17.1)
    choices = ", ".join(_options("experiment"))
    with pytest.raises(ConfigError) as e:
        load_config([override])
    assert str(e.value) == f"unknown experiment 'smok'; did you mean 'smoke'? choices: {choices}"


@pytest.mark.parametrize("group", [*GROUPS, "experiment"])
def test_every_group_rejects_an_unknown_choice(group):
    with pytest.raises(ConfigError, match=rf"^unknown {group} 'doesnotexist'; choices: "):
        load_config([f"{group}=doesnotexist"])


def test_round_trip_to_dict_from_dict():
    cfg = load_config(["experiment=smoke", "algo=gan"])
    assert from_dict(RootConfig, to_dict(cfg)) == cfg


def test_cross_attention_needs_word_tokens_and_text_kinds_are_checked():
    with pytest.raises(ConfigError, match="text.kind=words"):
        load_config(["student.cross_attention=true"])
    with pytest.raises(ConfigError, match="text.kind must be"):
        load_config(["text.kind=bert"])
    cfg = load_config(["student.cross_attention=true", "text.kind=words", "text.max_words=20"])
    assert cfg.student.cross_attention and cfg.text.max_words == 20


def test_weight_followers_bound_is_a_cluster_key():
    assert load_config([]).cluster.weights_max_followers is None  # half the host's cores
    assert load_config(["cluster.weights_max_followers=2"]).cluster.weights_max_followers == 2
    with pytest.raises(ConfigError, match="weights_max_followers must be >= 0"):
        load_config(["cluster.weights_max_followers=-1"])
