"""The pretraining set: rendered once in a process pool, the same clips the renderer gives one by one."""

from __future__ import annotations

import json

import pytest
import torch

from afd_async.checkpoint import read_checkpoint
from afd_async.config import load_config
from afd_async.physics.grammar import parse_prompt
from afd_async.physics.suite import generate_training_prompts, load_prompt_suite
from afd_async.train.pretrain import pretrain
from afd_async.train.pretrain_data import pretrain_prompts, render_pretrain_clips, weakened_physics
from afd_async.train.teacher_source import make_teacher_source


def test_pool_renders_the_clips_the_renderer_gives() -> None:
    cfg = load_config(["pretrain.seeds_per_prompt=2"])
    prompts = [r.prompt for r in load_prompt_suite("train")[:40]]
    clips = render_pretrain_clips(cfg, prompts, workers=2)
    assert clips.frames.shape[0] == 80 and clips.frames.dtype == torch.uint8
    idx, seeds = [0, 39, 17, 17], [1, 0, 0, 1]
    want = make_teacher_source(cfg).batch([prompts[i] for i in idx], seeds,
                                          [weakened_physics(cfg, i, s) for i, s in zip(idx, seeds)])
    assert torch.equal(clips.batch(idx, seeds, torch.device("cpu")), want)
    assert not torch.equal(want[2], want[3])  # two seeds of one prompt are two clips: the row index is right


def test_grammar_prompts_hold_out_the_eval_scenes() -> None:
    held_out = {parse_prompt(r.prompt).canonical() for r in load_prompt_suite("eval")}
    prompts = generate_training_prompts(3000, exclude=[r.prompt for r in load_prompt_suite("eval")])
    keys = [parse_prompt(p).canonical() for p in prompts]
    assert len(set(keys)) == 3000 and not held_out & set(keys)
    assert generate_training_prompts(50) == generate_training_prompts(50)
    assert generate_training_prompts(50, seed=2) != generate_training_prompts(50)
    with pytest.raises(ValueError, match="num must be >= 1"):
        generate_training_prompts(0)


def test_pretrain_on_grammar_prompts_records_its_set(tmp_path) -> None:
    out = tmp_path / "s.safetensors"
    cfg = load_config(["text.kind=hash", "pretrain.num_prompts=12", "pretrain.seeds_per_prompt=1", "pretrain.steps=2",
                       "pretrain.batch_size=2", "pretrain.render_workers=1", f"pretrain.output={out}",
                       "pretrain.loss=x0", "student.text_to_tokens=true"])
    assert len(pretrain_prompts(cfg)) == 12
    pretrain(cfg)
    _, config, meta = read_checkpoint(out)
    meta = meta["pretrain"]
    assert (meta["prompts"], meta["num_prompts"], meta["steps"], meta["text_kind"], meta["loss"]) == (
        12, 12, 2, "hash", "x0")
    assert config["text_to_tokens"] is True
    log = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1] and all(r["loss"] > 0 for r in log)


def test_bad_pretrain_set_sizes_are_config_errors() -> None:
    with pytest.raises(Exception, match="num_prompts must be >= 1"):
        load_config(["pretrain.num_prompts=0"])
    with pytest.raises(Exception, match="render_workers must be >= 0"):
        load_config(["pretrain.render_workers=-1"])
    with pytest.raises(Exception, match=r"pretrain.loss: 'x1' is not one of \['v', 'x0'\]"):
        load_config(["pretrain.loss=x1"])
