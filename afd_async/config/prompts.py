"""Which prompts a run trains and evaluates on: the shipped splits, or the files `prompts=` and `eval_prompts=` name.

    afd run prompts=my_prompts.txt                       # train on my prompts, evaluate on the shipped eval split
    afd run prompts=train.txt eval_prompts=held_out.txt  # both mine

`prompts` feeds the rollout plan (`train/plan.py`), which every role builds for
itself: the student actor rolls out the plan's prompts and asks the teacher for
the same (prompt, seed) through the teacher queue, so every prompt of the file is
paired. `eval_prompts` feeds the evaluator (physics score, samples) and the D
probes. The file format is `afd_async.physics.prompt_file`'s.

Both files are checked when the config is validated (`RootConfig.__post_init__`
calls `config.root.check_prompt_files`), so `afd run` with a bad file stops before any
process or folder is made, naming every bad line; each role checks again when it
loads the same config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from afd_async.physics import PromptRecord, load_prompt_file, load_prompt_suite

if TYPE_CHECKING:
    from afd_async.config.root import RootConfig


def train_prompts(cfg: "RootConfig") -> list[PromptRecord]:
    """The prompts the plan draws from: `cfg.prompts`, or the shipped train split."""
    return load_prompt_file(cfg.prompts) if cfg.prompts else load_prompt_suite("train")


def eval_prompts(cfg: "RootConfig") -> list[PromptRecord]:
    """The prompts the evaluator and the D probes use (their first N): `cfg.eval_prompts`, or the shipped eval split."""
    return load_prompt_file(cfg.eval_prompts) if cfg.eval_prompts else load_prompt_suite("eval")


def run_source_problem(cfg: "RootConfig") -> Optional[str]:
    """Why `afd run` cannot use `cfg`'s teacher prompt source, or None.

    In `afd run` the student actor rolls out the plan's prompts and asks the teacher for the same (prompt,
    seed) through the teacher queue; a teacher actor reading a file never reads that queue, and clips of the
    file's prompts are never asked for by a student: nothing would ever be paired.
    """
    src = cfg.teacher.source
    if src.kind != "file":
        return None
    return (f"teacher.source.kind=file never pairs in afd run (the student actor rolls out the plan's prompts and "
            f"asks the teacher for them through the teacher queue, which a file source does not read); give the "
            f"file as prompts={src.path} and both actors use it (teacher.source.kind=file is for a standalone "
            "`afd teacher-actor` filling a teacher cache)")

