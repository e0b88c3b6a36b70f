"""`afd run prompts=FILE eval_prompts=FILE` through the real launcher (issue 17.3): every prompt of the file is
paired; a bad file, or a teacher file source, stops the run before any role, folder or Redis exists."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from afd_async.physics.vocabulary import EXAMPLES

REPO = Path(__file__).resolve().parents[2]
TINY = ["experiment=smoke", "replay.staleness=0", "train.steps=2", "algo.d_warmup_steps=1", "train.eval_prompts=2",
        "train.d_probe_every=0", "text.kind=hash"]
TRAIN = b"""# my prompts: <id><TAB><prompt>, or a bare prompt
throw-1\ta ball is thrown up and falls down
throw-2\ta red cube is thrown up and bounces twice

a pendulum on a long rope swings widely
a blue ball drops from the top right and bounces twice on the ground
"""
EVAL = b"ev-1\ta green ball is tossed up and lands\nev-2\ta yellow block slides to the left and stops\n"


def _afd(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "afd_async.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _cached(text_cache: Path) -> set[str]:
    return {p.stem for p in text_cache.glob("*.pt")}


def _key(prompt: str) -> str:  # CachedTextEncoder's file name for a prompt (text.kind=hash)
    return hashlib.sha256(f"hash\0{prompt}".encode()).hexdigest()[:32]


@pytest.mark.slow
def test_afd_run_pairs_every_prompt_of_the_file(tmp_path: Path) -> None:
    train, evals, out = tmp_path / "mine.txt", tmp_path / "held_out.txt", tmp_path / "run"
    train.write_bytes(TRAIN)
    evals.write_bytes(EVAL)
    proc = _afd("run", *TINY, f"prompts={train}", f"eval_prompts={evals}", f"train.output_dir={out}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    # 1 warm-up group + 2 training groups of 2 pairs: every planned pair was made and reached the learners
    assert summary["steps"] == 2 and int(summary["status"]["pairs_written"]) == 6
    assert int(summary["status"].get("pairs_dropped_stale", 0)) == 0
    assert summary["eval_prompts"] == ["a green ball is tossed up and lands", "a yellow block slides to the left and stops"]
    # Every role encodes the prompts it meets into the run's text cache: it holds exactly the two files' prompts,
    # so the plan both actors follow drew from the file, never from the shipped train split.
    mine = ["a ball is thrown up and falls down", "a red cube is thrown up and bounces twice",
            "a pendulum on a long rope swings widely", "a blue ball drops from the top right and bounces twice on the ground"]
    assert _cached(out / "text_cache") == {_key(p) for p in mine + summary["eval_prompts"]}


def test_a_bad_prompt_file_stops_afd_run_before_anything_starts(tmp_path: Path) -> None:
    train, out = tmp_path / "mine.txt", tmp_path / "run"
    train.write_bytes(b"a red ball falls\n# a comment\na glorp ball bounces\na pendulum swings\n")
    proc = _afd("run", *TINY, f"prompts={train}", f"train.output_dir={out}", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"afd: configuration error: config: prompts: {train}:3: 'a glorp ball bounces': unknown word 'glorp'; nearest "
        f"known words: 'lower', 'floor'; a prompt that parses: '{EXAMPLES['fall']}' (all words: python -m afd_async.physics --words)")
    assert not out.exists()  # no folder, no Redis, no role: nothing half-started


def test_afd_run_refuses_a_teacher_file_source_before_anything_starts(tmp_path: Path) -> None:
    train, out = tmp_path / "mine.txt", tmp_path / "run"
    train.write_bytes(TRAIN)
    proc = _afd("run", *TINY, "teacher.source.kind=file", f"teacher.source.path={train}", f"train.output_dir={out}",
                timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "afd run: teacher.source.kind=file never pairs in afd run (the student actor rolls out the plan's prompts and "
        "asks the teacher for them through the teacher queue, which a file source does not read); give the file as "
        f"prompts={train} and both actors use it (teacher.source.kind=file is for a standalone `afd teacher-actor` "
        "filling a teacher cache)")
    assert not out.exists()
