"""`afd pretrain-d`: the tiny D learns to rank corpus clips above their corruptions, and its checkpoint is a
`discriminator.checkpoint` that the factory refuses for another architecture or prompt encoder."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from afd_async.checkpoint import CheckpointError, read_checkpoint
from afd_async.config import load_config
from afd_async.config.convert import ConfigError
from afd_async.models.factory import make_discriminator
from afd_async.models.tiny_discriminator import TinyVideoDiscriminator
from afd_async.train.pretrain_d import pretrain_discriminator

TINY = ["experiment=smoke", "pretrain.num_prompts=12", "pretrain.render_workers=1", "pretrain_d.steps=30",
        "pretrain_d.batch_size=4", "pretrain_d.lr=2e-3", "pretrain_d.warmup_steps=0", "pretrain_d.log_every=1",
        "pretrain_d.probe_every=0", "pretrain_d.probe_clips=4", "discriminator.channels=8", "discriminator.depth=2",
        "discriminator.temporal_head=true"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain_d") / "d.safetensors"
    cfg = load_config([*TINY, f"pretrain_d.output={out}"])
    log: list[dict] = []
    path = pretrain_discriminator(cfg, on_log=log.append)
    return cfg, path, log


def test_pretrained_d_learns_the_corruptions_and_records_its_recipe(pretrained) -> None:
    cfg, path, log = pretrained
    steps = [r for r in log if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 31))
    first, last = sum(r["loss"] for r in steps[:5]) / 5, sum(r["loss"] for r in steps[-5:]) / 5
    assert last < 0.8 * first  # the BT loss of real vs corrupted clips falls (ln 2 ≈ 0.69 at chance)
    probes = [r for r in log if r.get("phase") == "probe"]
    assert [r["step"] for r in probes] == [0, 30]  # probe_every=0: at the start and the end only
    assert {"d_probe_shuffled", "d_probe_reversed", "d_probe_frame_drop", "d_probe_prompt_swap",
            "d_probe_rho_physics"} <= set(probes[-1])
    _, config, meta = read_checkpoint(path)
    assert config["temporal_head"] is True and config["channels"] == 8
    rec = meta["pretrain_d"]
    assert rec["steps"] == 30 and rec["text_kind"] == cfg.text.kind == "hash" and rec["prompts"] == 12
    assert rec["probes_end"]["d_probe_reversed"] == probes[-1]["d_probe_reversed"]


def test_pretrained_d_loads_as_the_discriminator_and_is_reproducible(pretrained, tmp_path) -> None:
    cfg, path, _ = pretrained
    dcfg = dataclasses.replace(cfg.discriminator, checkpoint=str(path))
    d = make_discriminator(dcfg, 384, text_kind="hash")
    assert isinstance(d, TinyVideoDiscriminator) and d.temporal_head
    again = pretrain_discriminator(load_config([*TINY, "pretrain_d.steps=3", f"pretrain_d.output={tmp_path}/a.st"]))
    twice = pretrain_discriminator(load_config([*TINY, "pretrain_d.steps=3", f"pretrain_d.output={tmp_path}/b.st"]))
    a, b = read_checkpoint(again)[0], read_checkpoint(twice)[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # seeded: the same D twice


def test_a_d_checkpoint_for_another_encoder_or_architecture_is_refused(pretrained, tmp_path) -> None:
    cfg, path, _ = pretrained
    dcfg = dataclasses.replace(cfg.discriminator, checkpoint=str(path))
    with pytest.raises(CheckpointError, match="pretrained on text.kind=hash.*text.kind=minilm"):
        make_discriminator(dcfg, 384, text_kind="minilm")
    with pytest.raises(CheckpointError, match="temporal_head=True, config asks for discriminator.temporal_head=False"):
        make_discriminator(dataclasses.replace(dcfg, temporal_head=False), 384)
    with pytest.raises(CheckpointError, match="channels=8, config asks for discriminator.channels=32"):
        make_discriminator(dataclasses.replace(dcfg, channels=32), 384)
    with pytest.raises(CheckpointError, match="text_dim=384, text.kind gives 16-dim"):
        make_discriminator(dcfg, 16)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        make_discriminator(dataclasses.replace(dcfg, checkpoint=str(tmp_path / "none.safetensors")), 384)


def test_pretrain_d_config_is_validated(tmp_path) -> None:
    for bad in (["pretrain_d.batch_size=1"], ["pretrain_d.kinds=[]"], ["pretrain_d.kinds=[reversed,reversed]"],
                ["pretrain_d.kinds=[backwards]"], ["pretrain_d.probe_clips=1"], ["pretrain_d.lr=0"]):
        with pytest.raises(ConfigError):
            load_config(["experiment=smoke", *bad])
    with pytest.raises(ValueError, match="batch_size=16 distinct prompts a step, but the corpus has 12"):
        pretrain_discriminator(load_config([*TINY, "pretrain_d.batch_size=16", f"pretrain_d.output={tmp_path}/d.st"]))
