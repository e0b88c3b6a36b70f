"""The shipped prompt suite and user prompt files."""

from __future__ import annotations

from pathlib import Path

import pytest

from afd_async.physics import PromptFileError, load_prompt_file, load_prompt_suite, parse_prompt, simulate
from afd_async.physics.suite import MOTIONS, generate_prompt_suite


def test_suite_sizes_ids_and_every_prompt_parses_and_simulates() -> None:
    train, evals = load_prompt_suite("train"), load_prompt_suite("eval")
    assert len(train) == 200 and len(evals) == 40
    ids = [r.prompt_id for r in train + evals]
    assert len(set(ids)) == len(ids)
    for record in train + evals:
        gt = simulate(parse_prompt(record.prompt), seed=0, seconds=2.0)
        assert ((gt.positions >= 0) & (gt.positions <= 1)).all()
    assert {parse_prompt(r.prompt).motion for r in evals} == set(MOTIONS)


def test_eval_scenes_are_distinct_from_train_scenes() -> None:
    train = {parse_prompt(r.prompt).canonical() for r in load_prompt_suite("train")}
    evals = {parse_prompt(r.prompt).canonical() for r in load_prompt_suite("eval")}
    assert len(evals) == 40 and not train & evals


def test_shipped_files_are_what_the_generator_writes() -> None:
    train, evals = generate_prompt_suite()
    assert train == load_prompt_suite("train") and evals == load_prompt_suite("eval")


def test_unknown_split() -> None:
    with pytest.raises(ValueError, match="split"):
        load_prompt_suite("test")  # type: ignore[arg-type]


def test_prompt_file_with_ids_bare_prompts_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("# my prompts\n\nfall-1\ta red ball falls\na pendulum swings\n", encoding="utf-8")
    records = load_prompt_file(path)
    assert [(r.prompt_id, r.prompt) for r in records] == [("fall-1", "a red ball falls"),
                                                          ("mine-0004", "a pendulum swings")]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "no prompts"),
        (b"# only a comment\n\n", "no prompts"),
        (b"a\ta red ball falls\nb\ta pendulum swings\na\ttwo balls collide\n",
         r":3: duplicate id 'a' \(first on line 1\)"),
        (b"a red ball falls\n\xff\xfe a ball\n", ":2: not UTF-8"),
        (b"ok\ta red ball falls\nbad\ta red ball flies\n", ":2: 'a red ball flies': 'flies' is known only in 'flies up'; nearest known words: 'lies'"),
        (b"\ta red ball falls\n", ":1: empty id"),
    ],
)
def test_prompt_file_errors_name_the_line(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    with pytest.raises(PromptFileError, match=fragment):
        load_prompt_file(path)


def test_missing_prompt_file(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="cannot read"):
        load_prompt_file(tmp_path / "nope.txt")


def test_every_bad_line_is_listed_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_bytes(b"# mine\na red ball falls\na glorp ball bounces\nx\ta pendulum swings\nx\ta ball is thrown up\n"
                     b"a ball \xff falls\n" + b"a ball falls " * 80 + b"\n")
    with pytest.raises(PromptFileError) as info:
        load_prompt_file(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: 4 bad lines (2 good):"
    assert lines[1].startswith(f"  {path}:3: 'a glorp ball bounces': unknown word 'glorp'; nearest known words: ")
    assert lines[2:] == [f"  {path}:5: duplicate id 'x' (first on line 4)",
                         f"  {path}:6: not UTF-8 (byte offset 94); save the file as UTF-8",
                         f"  {path}:7: line of 1040 characters, more than 1000"]


def test_read_prompt_file_keeps_the_good_lines_and_reports_the_bad(tmp_path: Path) -> None:
    from afd_async.physics import read_prompt_file

    path = tmp_path / "mine.txt"
    path.write_text("a red ball falls\na glorp ball bounces\nok\ta pendulum swings\n", encoding="utf-8")
    report = read_prompt_file(path)
    assert [r.prompt_id for r in report.records] == ["mine-0001", "ok"]
    assert [p.line for p in report.problems] == [2]
    assert report.describe(report.problems[0]).startswith(f"{path}:2: 'a glorp ball bounces': unknown word 'glorp'")


def test_an_id_without_its_tab_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("fall-0001 a red ball falls\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match=r":1: 'fall-0001 a red ball falls': unknown word '0001'.*"
                                              r"\(an id column is separated from the prompt by a TAB\)$"):
        load_prompt_file(path)
