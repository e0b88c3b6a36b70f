"""`prompts=FILE` / `eval_prompts=FILE` (issue 17.3): checked with the config, fed to the plan of both actors."""

from __future__ import annotations

from pathlib import Path

import pytest

from afd_async.config import load_config
from afd_async.config.convert import ConfigError
from afd_async.config.prompts import eval_prompts, run_source_problem, train_prompts
from afd_async.physics import load_prompt_suite
from afd_async.physics.vocabulary import EXAMPLES
from afd_async.train.plan import Planner

SMOKE = ["experiment=smoke"]  # batch 2 of 1 rollout: a batch draws 2 distinct prompts
HELP = "(all words: python -m afd_async.physics --words)"


def _file(tmp_path: Path, content: bytes, name: str = "mine.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_the_files_replace_the_shipped_splits(tmp_path: Path) -> None:
    mine = _file(tmp_path, b"# mine\nt1\ta ball is thrown up and falls down\n\na red cube slides to the left\n")
    held = _file(tmp_path, b"a pendulum on a long rope swings widely\na blue ball drops\n", "held.txt")
    cfg = load_config([*SMOKE, f"prompts={mine}", f"eval_prompts={held}"])
    assert [(r.prompt_id, r.prompt) for r in train_prompts(cfg)] == [
        ("t1", "a ball is thrown up and falls down"), ("mine-0004", "a red cube slides to the left")]
    assert [r.prompt for r in eval_prompts(cfg)] == ["a pendulum on a long rope swings widely", "a blue ball drops"]
    default = load_config(SMOKE)
    assert train_prompts(default) == load_prompt_suite("train") and eval_prompts(default) == load_prompt_suite("eval")


def test_the_plan_both_actors_build_draws_only_from_the_file(tmp_path: Path) -> None:
    from afd_async.runtime.context import make_planner

    mine = _file(tmp_path, b"a ball is thrown up\na red cube slides to the left\na pendulum swings\n")
    cfg = load_config([*SMOKE, f"prompts={mine}", "train.steps=20"])
    planner = make_planner(cfg)  # the student actor, the feeder and the learners each build this one
    assert isinstance(planner, Planner)
    used = {p.prompt for n in range(planner.total_groups) for p in planner.group(n).pairs}
    assert used == {r.prompt for r in train_prompts(cfg)}


# The exact messages `afd run` prints (after "afd: configuration error: ") before anything starts.
@pytest.mark.parametrize(("content", "problem"), [
    (b"a red ball falls\n# two\n\na glorp ball bounces\n",
     ":4: 'a glorp ball bounces': unknown word 'glorp'; nearest known words: 'lower', 'floor'; a prompt that parses: "
     f"'{EXAMPLES['fall']}' {HELP}"),
    (b"a red ball falls\na pendulum \xff swings\n", ":2: not UTF-8 (byte offset 28); save the file as UTF-8"),
    (b"x\ta red ball falls\ny\ta pendulum swings\nx\ta ball is thrown up\n", ":3: duplicate id 'x' (first on line 1)"),
    (b"a red ball falls\n" + b"a ball falls " * 100 + b"\n", ":2: line of 1300 characters, more than 1000"),
])
def test_a_bad_line_stops_the_config_naming_file_and_line(tmp_path: Path, content: bytes, problem: str) -> None:
    path = _file(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_config([*SMOKE, f"prompts={path}"])
    assert str(info.value) == f"config: prompts: {path}{problem}"


def test_every_bad_line_is_named_at_once(tmp_path: Path) -> None:
    path = _file(tmp_path, b"a red ball falls\na glorp ball bounces\na blue ball falls\na ball flies\n")
    with pytest.raises(ConfigError) as info:
        load_config([*SMOKE, f"eval_prompts={path}"])
    lines = str(info.value).splitlines()
    assert lines[0] == f"config: eval_prompts: {path}: 2 bad lines (2 good):"
    assert lines[1].startswith(f"  {path}:2: 'a glorp ball bounces': unknown word 'glorp'")
    assert lines[2].startswith(f"  {path}:4: 'a ball flies': 'flies' is known only in 'flies up'")


@pytest.mark.parametrize(("content", "problem"), [
    (b"", ": no prompts (only blank lines or comments)"),
    (b"# only a comment\n\n", ": no prompts (only blank lines or comments)"),
])
def test_an_empty_file_is_an_error(tmp_path: Path, content: bytes, problem: str) -> None:
    path = _file(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_config([*SMOKE, f"prompts={path}"])
    assert str(info.value) == f"config: prompts: {path}{problem}"


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config: prompts: cannot read prompt file .*nope\.txt: \[Errno 2\] No such file"):
        load_config([*SMOKE, f"prompts={tmp_path / 'nope.txt'}"])


def test_too_few_prompts_for_a_batch_or_for_the_probes(tmp_path: Path) -> None:
    one = _file(tmp_path, b"a red ball falls\n")
    with pytest.raises(ConfigError) as info:
        load_config([*SMOKE, f"prompts={one}"])
    assert str(info.value) == (f"config: prompts: {one} has 1 prompt, fewer than the 2 distinct prompts a batch draws "
                               "(train.batch_size=2 / algo.rollouts_per_prompt=1); add prompts or lower train.batch_size")
    with pytest.raises(ConfigError) as info:
        load_config([*SMOKE, f"eval_prompts={one}"])
    assert str(info.value) == (f"config: eval_prompts: {one} has 1 prompt; the D probes (train.d_probe_every=10) need 2 "
                               "(one clip is scored for another prompt); add one or set train.d_probe_every=0")
    assert load_config([*SMOKE, f"eval_prompts={one}", "train.d_probe_every=0"]).eval_prompts == str(one)


def test_afd_run_refuses_a_teacher_file_source(tmp_path: Path) -> None:
    path = _file(tmp_path, b"a red ball falls\n")
    assert run_source_problem(load_config(SMOKE)) is None
    cfg = load_config([*SMOKE, "teacher.source.kind=file", f"teacher.source.path={path}"])
    assert run_source_problem(cfg) == (
        "teacher.source.kind=file never pairs in afd run (the student actor rolls out the plan's prompts and asks the "
        "teacher for them through the teacher queue, which a file source does not read); give the file as "
        f"prompts={path} and both actors use it (teacher.source.kind=file is for a standalone `afd teacher-actor` "
        "filling a teacher cache)")
