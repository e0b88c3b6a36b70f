"""Prompt files: the format, and validation that names the line of every problem.

Format (UTF-8, one prompt a line; `afd run prompts=FILE`, `eval_prompts=FILE`,
`teacher.source.path`)::

    # a comment: lines whose first non-blank character is '#' are ignored, so are blank lines
    fall-0001<TAB>a red ball falls from the top and bounces twice
    a blue cube slides to the left and stops      <- no id column: the id is "<file stem>-<line>"

The optional id column is separated from the prompt by one TAB character; an
id is 1-128 of `[A-Za-z0-9._:-]` (ids end up in Redis keys and file names) and
unique in the file. Every prompt must parse (`afd_async.physics.grammar`).

`read_prompt_file` checks every line and returns the good records with a
`LineProblem` for each bad line (a long-running teacher actor counts and logs
those and goes on); `load_prompt_file` refuses a file with any problem, listing
them all with their line numbers, so a typo fails before a run starts instead of
hours later. Whole-file problems (missing, more than `MAX_FILE_BYTES`, no
prompts at all) raise `PromptFileError` in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from afd_async.physics.grammar import parse_prompt
from afd_async.physics.prompt_error import PromptError

MAX_FILE_BYTES = 16 * 1024 * 1024  # far above any real suite (the shipped train split is ~12 kB)
MAX_LINE_CHARS = 1000  # a prompt of the grammar is a sentence; a longer line is a broken file
MAX_LISTED = 20  # problems spelled out in one PromptFileError; the rest are counted
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # every C0 control but tab and newline; CR is stripped first
_BOM = b"\xef\xbb\xbf"


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file and the line of each problem."""


@dataclass(frozen=True)
class PromptRecord:
    """One prompt of a suite: a stable id (for pairing and caching) and its text."""

    prompt_id: str
    prompt: str


@dataclass(frozen=True)
class LineProblem:
    """A bad line: its number (1-based) and what is wrong, as the user sees it after `path:line: `."""

    line: int
    message: str


@dataclass(frozen=True)
class PromptFileReport:
    """What `read_prompt_file` found: the good records and one problem per bad line."""

    path: Path
    records: list[PromptRecord]
    problems: list[LineProblem]

    def describe(self, problem: LineProblem) -> str:
        return f"{self.path}:{problem.line}: {problem.message}"


def read_prompt_file(path: str | Path) -> PromptFileReport:
    """Read a prompt file, checking every line (format in the module docstring).

    Raises:
        PromptFileError: the file is missing, unreadable or over `MAX_FILE_BYTES`,
            or it holds no prompt line at all (only blanks and comments).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PromptFileError(f"{path}: {size} bytes, more than the {MAX_FILE_BYTES}-byte limit of a prompt file")
        raw = path.read_bytes()
    except OSError as exc:
        raise PromptFileError(f"cannot read prompt file {path}: {exc}") from exc
    records: list[PromptRecord] = []
    problems: list[LineProblem] = []
    seen: dict[str, int] = {}
    offset = len(_BOM) if raw.startswith(_BOM) else 0
    for lineno, chunk in enumerate(raw[offset:].split(b"\n"), start=1):
        try:
            record = _record(path, lineno, chunk, offset, seen)
        except _Bad as bad:
            problems.append(LineProblem(lineno, str(bad)))
        else:
            if record is not None:
                seen[record.prompt_id] = lineno
                records.append(record)
        offset += len(chunk) + 1
    if not records and not problems:
        raise PromptFileError(f"{path}: no prompts (only blank lines or comments)")
    return PromptFileReport(path, records, problems)


def load_prompt_file(path: str | Path) -> list[PromptRecord]:
    """Read a prompt file and refuse it if any line is bad.

    Raises:
        PromptFileError: as `read_prompt_file`, or naming every bad line (the
            first `MAX_LISTED`): not UTF-8, too long, control characters, extra
            tabs, a bad, empty or duplicate id, an empty prompt, or a prompt
            outside the grammar (the word, the nearest known words, an example).
    """
    report = read_prompt_file(path)
    if report.problems:
        lines = [report.describe(p) for p in report.problems[:MAX_LISTED]]
        more = len(report.problems) - len(lines)
        if more:
            lines.append(f"... and {more} more bad line{'s' if more > 1 else ''}")
        if len(report.problems) == 1:
            raise PromptFileError(lines[0])
        good = len(report.records)
        raise PromptFileError(f"{report.path}: {len(report.problems)} bad lines ({good} good):\n  " + "\n  ".join(lines))
    return report.records


def write_prompt_file(path: str | Path, records: list[PromptRecord], header: str = "") -> None:
    """Write records in the format `load_prompt_file` reads (`header`: a comment line, without '#')."""
    lines = ([f"# {header}"] if header else []) + [f"{r.prompt_id}\t{r.prompt}" for r in records]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


class _Bad(Exception):
    """One line's problem (internal: becomes a `LineProblem`)."""


def _record(path: Path, lineno: int, chunk: bytes, offset: int, seen: dict[str, int]) -> PromptRecord | None:
    try:
        line = chunk.decode("utf-8").removesuffix("\r")
    except UnicodeDecodeError as exc:
        raise _Bad(f"not UTF-8 (byte offset {offset + exc.start}); save the file as UTF-8") from None
    if len(line) > MAX_LINE_CHARS:
        raise _Bad(f"line of {len(line)} characters, more than {MAX_LINE_CHARS}")
    bad = _CONTROL.search(line)
    if bad is not None:
        raise _Bad(f"control character {bad.group()!r} at column {bad.start() + 1}")
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    tabs = line.count("\t")
    if tabs > 1:
        raise _Bad(f"{tabs} tabs; expected <id><TAB><prompt> or a bare prompt")
    if tabs:
        prompt_id, prompt = (part.strip() for part in line.split("\t", 1))
        if prompt_id and not _ID.match(prompt_id):
            raise _Bad(f"id {prompt_id!r} is not 1-128 of [A-Za-z0-9._:-]")
    else:
        prompt_id, prompt = f"{path.stem}-{lineno:04d}", stripped
    if not prompt_id or not prompt:
        raise _Bad(f"empty id or prompt in {line!r}")
    if prompt_id in seen:
        raise _Bad(f"duplicate id {prompt_id!r} (first on line {seen[prompt_id]})")
    try:
        parse_prompt(prompt)
    except PromptError as exc:
        first = stripped.split()[0]
        hint = ""
        if not tabs and exc.word is not None and _ID.match(first) and exc.word in first.lower():
            hint = " (an id column is separated from the prompt by a TAB)"
        raise _Bad(f"{exc}{hint}") from None
    return PromptRecord(prompt_id=prompt_id, prompt=prompt)
