"""Bad prompt files: every refusal is a `PromptFileError` naming the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afd_async.physics import suite
from afd_async.physics.suite import PromptFileError, load_prompt_file

OK = "a red ball falls"


@pytest.mark.parametrize(("content", "fragment"), [
    (b"", r"prompts\.txt: no prompts"),
    (b"\n\n   \n# c\n", "no prompts"),
    (b"\xef\xbb\xbf", "no prompts"),  # a BOM and nothing else
    ("a\ta red ball falls\n".encode("utf-16"), ":1: not UTF-8"),  # the right text, the wrong encoding
    (b"a red ball falls\nb\xe9b\ta pendulum swings\n", r":2: not UTF-8 \(byte offset 18\)"),
    (b"x\ta red ball falls\nx\ta pendulum swings\n", r":2: duplicate id 'x' \(first on line 1\)"),
    (b"ok\ta red ball falls\n\na\tb\ta pendulum swings\n", ":3: 2 tabs"),
    (b"my id\ta red ball falls\n", r":1: id 'my id' is not 1-128 of"),
    (b"../../etc\ta red ball falls\n", "is not 1-128 of"),
    (("k" * 129 + "\ta red ball falls\n").encode(), "is not 1-128 of"),
    (b"a red ball falls\na red \x00ball falls\n", r":2: control character '\\x00' at column 7"),
    (b"a red ball \x1b[31mfalls\n", r":1: control character '\\x1b'"),
    (b"id\t   \n", ":1: empty id or prompt"),
    (b"a red ball falls\n" + b"a " * 600 + b"\n", ":2: line of 1200 characters, more than 1000"),
    (b"a red ball falls\n1\tselect * from prompts\n", ":2: 'select \\* from prompts': unknown word 'select'"),
])
def test_bad_prompt_file_names_file_and_line(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    with pytest.raises(PromptFileError, match=fragment) as info:
        load_prompt_file(path)
    assert str(path) in str(info.value)


def test_huge_file_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size check uses stat(), so a multi-GB file is never read into memory."""
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:  # sparse: 17 MiB on paper, nothing on disk
        f.truncate(suite.MAX_FILE_BYTES + 1)
    with pytest.raises(PromptFileError, match=f"{suite.MAX_FILE_BYTES + 1} bytes, more than"):
        load_prompt_file(path)


def test_crlf_bom_and_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "win.txt"
    path.write_bytes(b"\xef\xbb\xbfa\ta red ball falls\r\nb\ta pendulum swings\r\n")
    assert [(r.prompt_id, r.prompt) for r in load_prompt_file(path)] == [("a", OK), ("b", "a pendulum swings")]
    with pytest.raises(PromptFileError, match="cannot read prompt file"):
        load_prompt_file(tmp_path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(st.just(OK), st.just("# c"), st.text(max_size=40),
                                st.binary(max_size=40).map(lambda b: b.decode("latin-1"))), max_size=6),
       raw_tail=st.binary(max_size=8))
def test_any_file_gives_records_or_prompt_file_error(tmp_path: Path, lines: list[str], raw_tail: bytes) -> None:
    path = tmp_path / "any.txt"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + raw_tail)
    try:
        records = load_prompt_file(path)
    except PromptFileError as e:
        assert str(path) in str(e)
        return
    ids = [r.prompt_id for r in records]
    assert records and len(set(ids)) == len(ids) and all(r.prompt.strip() for r in records)
