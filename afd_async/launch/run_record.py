"""A run folder knows the config it belongs to: `<output_dir>/run.json`, checked before `afd run` resumes it.

Why: `afd run` keeps a run's state in its output folder (the private Redis's AOF,
the learners' checkpoints, metrics.jsonl), and a second `afd run` on the same
folder resumes it. Without a record, a run of another config "resumed" the old
one: a 4-step smoke run on a folder a 200-step run had left at step 50 exited at
once and reported the old run's figures as its own (issue 17.2).

    prepared = prepare_run_folder(cfg, overrides)   # before anything starts: fresh, resume, or raise
    ... run ...
    record_finished(cfg, summary)                   # the folder now holds `steps` steps: a rerun has nothing to do

The fingerprint covers every config key except `RESUMABLE` ones: where and how
the processes run (cluster ports and restarts, threads, the folder itself), how
often they log, evaluate and checkpoint, the launcher's own timeouts, and
`train.steps`. Extending a run is a resume: group n of the plan is a pure
function of (seed, n), not of the total (`train/plan.py`), so a run raised from
200 to 300 steps trains steps 201..300 exactly as a 300-step run would. The
learner ranks do count (checkpoint folders are per rank). Prompt files count by
their content (`prompts.sha256`), not their path.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from afd_async.config.convert import to_dict
from afd_async.config.root import RootConfig

RECORD_NAME = "run.json"
RESUMABLE: tuple[str, ...] = (
    "cluster.", "experiment", "text.cache_dir",
    "train.output_dir", "train.steps", "train.resume", "train.resume_with_changes", "train.stall_timeout_s",
    "train.start_timeout_s",
    "train.stop_grace_s", "train.log_every", "train.eval_every", "train.d_probe_every", "train.checkpoint_every",
    "train.checkpoint_keep", "train.torch_threads",
)
MATTERS: tuple[str, ...] = ("cluster.d_learner_ranks", "cluster.student_learner_ranks")
_SHOWN = 12  # differing keys listed in a refusal
_STATE_FILES = ("metrics.jsonl", "summary.json")  # with the Redis data and learner checkpoints: a run to resume


class RunFolderRefused(ValueError):
    """The output folder holds a run this config may not resume; the message names the keys and the options."""


class NothingToDo(Exception):
    """The output folder's run already has `train.steps` steps."""


@dataclass(frozen=True)
class PreparedRun:
    """What `prepare_run_folder` decided: a fresh run, or the resume of the folder's run (at `steps_done`, if known)."""

    resumed: bool
    started_over: bool = False  # train.resume=false removed an earlier run's state
    changed: tuple[str, ...] = ()  # keys that differ from the record (train.resume_with_changes)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: data}


def _counts(key: str) -> bool:
    if key in MATTERS:
        return True
    return not any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE)


PROMPT_FILES = ("prompts", "eval_prompts")  # files whose content counts, not where they lie


def _file_digest(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    try:
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return f"unreadable: {path}"


def config_that_matters(cfg: RootConfig) -> dict[str, Any]:
    """`{dotted key: value}` of every key the fingerprint covers (see the module docstring).

    A prompt file (`prompts=`, `eval_prompts=`) counts by its content, as `<key>.sha256`: the same prompts moved
    elsewhere are the same run, an edited file is not.
    """
    values = {k: v for k, v in _flatten(to_dict(cfg)).items() if _counts(k) and k not in PROMPT_FILES}
    for key in PROMPT_FILES:
        if hasattr(cfg, key):
            values[f"{key}.sha256"] = _file_digest(getattr(cfg, key))
    return dict(sorted(values.items()))


def fingerprint(values: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of `config_that_matters` (hex, 16 digits)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_record(out: Path) -> Optional[dict[str, Any]]:
    path = out / RECORD_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def _write_record(out: Path, record: dict[str, Any]) -> None:
    tmp = out / f".{RECORD_NAME}.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(out / RECORD_NAME)


def _checkpoint_root(cfg: RootConfig, out: Path) -> Path:
    return Path(cfg.train.checkpoint_dir) if cfg.train.checkpoint_dir else out / "checkpoints"


def _learner_dirs(cfg: RootConfig, out: Path) -> list[Path]:
    root = _checkpoint_root(cfg, out)
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and p.name.startswith(("student-learner", "d-learner"))]


def _has_files(path: Path) -> bool:
    return path.is_dir() and any(p.is_file() for p in path.rglob("*"))


def has_run_state(cfg: RootConfig, out: Path) -> bool:
    """Whether `out` holds (part of) a run: Redis data, learner checkpoints, metrics or a summary (a record alone,
    left by a launch stopped before its Redis started, is nothing to resume)."""
    return (_has_files(out / "redis") or any(_has_files(p) for p in _learner_dirs(cfg, out))
            or any((out / name).is_file() for name in _STATE_FILES))


def _start_over(cfg: RootConfig, out: Path) -> None:
    """Delete the run state `train.resume=false` replaces (other outputs are overwritten at the end)."""
    shutil.rmtree(out / "redis", ignore_errors=True)
    for path in _learner_dirs(cfg, out):
        shutil.rmtree(path, ignore_errors=True)
    for name in (*_STATE_FILES, RECORD_NAME):
        (out / name).unlink(missing_ok=True)


_ABSENT = object()  # a key one side lacks (the schema changed between the two invocations)


def _show(value: Any) -> str:
    return "<absent>" if value is _ABSENT else json.dumps(value, default=str)


def differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """`(key, recorded value, value now)` of every key that differs, in key order (`_ABSENT` where missing)."""
    keys = sorted(set(recorded) | set(now))
    return [(k, recorded.get(k, _ABSENT), now.get(k, _ABSENT)) for k in keys
            if recorded.get(k, _ABSENT) != now.get(k, _ABSENT)]


def _options(where: str) -> str:
    return (f"Use a new folder (train.output_dir=<another folder>), start over in {where} (train.resume=false: deletes "
            "its Redis data, learner checkpoints, metrics.jsonl and summary.json), or resume it with this config anyway "
            "(train.resume_with_changes=true).")


def prepare_run_folder(cfg: RootConfig, overrides: Sequence[str], *, now: Optional[str] = None) -> PreparedRun:
    """Check `train.output_dir` against this config before anything starts, and record the config there.

    Raises:
        RunFolderRefused: the folder holds a run of another config (or one without a record) and
            neither `train.resume=false` nor `train.resume_with_changes=true` was given.
        NothingToDo: the folder's run is complete with at least `train.steps` steps.
    """
    where = cfg.train.output_dir
    out = Path(where)
    values = config_that_matters(cfg)
    record = read_record(out) if out.is_dir() else None
    stamp = now or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entry: dict[str, Any] = {"at": stamp, "overrides": list(overrides)}
    started_over, resumed, changed = False, False, ()
    if not out.is_dir() or not has_run_state(cfg, out):
        record = None  # fresh
    elif not cfg.train.resume:
        _start_over(cfg, out)
        started_over, record = True, None
    elif record is None:
        raise RunFolderRefused(
            f"{where} holds a run without a record of its config (no {RECORD_NAME}: made before afd kept one), "
            f"so resuming it cannot be checked. {_options('it')}")
    else:
        diff = differences(record.get("config", {}), values)
        if diff and not cfg.train.resume_with_changes:
            lines = [f"  {k}: {_show(a)} -> {_show(b)}" for k, a, b in diff[:_SHOWN]]
            if len(diff) > _SHOWN:
                lines.append(f"  ... and {len(diff) - _SHOWN} more (the recorded config is in {out / RECORD_NAME})")
            raise RunFolderRefused(
                f"{where} holds a run of another config; {len(diff)} {'key differs' if len(diff) == 1 else 'keys differ'} "
                f"(recorded -> now):\n" + "\n".join(lines) + "\n" + _options("it"))
        done = record.get("steps_done")
        if done is not None and done >= cfg.train.steps:
            has = f"{done}/{cfg.train.steps} steps" if done == cfg.train.steps else f"{done} steps, train.steps={cfg.train.steps}"
            raise NothingToDo(f"nothing to do: {where} already has {has} (raise train.steps to train on; "
                              f"train.resume=false starts over)")
        resumed, changed = True, tuple(k for k, _, _ in diff)
        if diff:
            entry["changed"] = {k: [None if a is _ABSENT else a, None if b is _ABSENT else b] for k, a, b in diff}
    out.mkdir(parents=True, exist_ok=True)
    entry["action"] = "resume" if resumed else "start over" if started_over else "start"
    history = (record or {}).get("history", []) + [entry]
    _write_record(out, {"fingerprint": fingerprint(values), "config": values,
                        "steps_done": (record or {}).get("steps_done"), "history": history})
    return PreparedRun(resumed=resumed, started_over=started_over, changed=changed)


def checkpointed_steps(cfg: RootConfig) -> int:
    """Student steps the folder's newest complete student-learner checkpoint holds (0: none).

    Read from the checkpoint folder names (`ckpt-<groups trained>`, `runtime/learner_state.py`) without loading
    one, so the launcher need not import torch to say where a stopped run resumes.
    """
    folder = _checkpoint_root(cfg, Path(cfg.train.output_dir)) / "student-learner"
    if not folder.is_dir():
        return 0
    return max((int(p.name[5:]) for p in folder.glob("ckpt-*")
                if p.name[5:].isdigit() and (p / "state.json").is_file()), default=0)


def record_finished(cfg: RootConfig, steps_done: int) -> None:
    """The run in `train.output_dir` is complete with `steps_done` student steps (its outputs are written)."""
    out = Path(cfg.train.output_dir)
    record = read_record(out)
    if record is not None:
        record["steps_done"] = int(steps_done)
        _write_record(out, record)


__all__ = ["MATTERS", "RECORD_NAME", "RESUMABLE", "NothingToDo", "PreparedRun", "RunFolderRefused",
           "checkpointed_steps", "config_that_matters", "differences", "fingerprint", "has_run_state", "prepare_run_folder", "read_record",
           "record_finished"]
