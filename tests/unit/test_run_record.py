"""The run folder's config record (`launch/run_record.py`): fresh, resume, refuse, nothing to do, start over."""

from __future__ import annotations

import pytest

from afd_async.config import load_config
from afd_async.launch.run_record import (
    NothingToDo, RunFolderRefused, checkpointed_steps, config_that_matters, prepare_run_folder, read_record,
    record_finished,
)

SMOKE = ["experiment=smoke"]


def cfg_for(out, *overrides):
    return load_config([*SMOKE, f"train.output_dir={out}", *overrides])


def leave_state(out):
    """What a stopped run leaves: Redis data, a learner checkpoint, metrics."""
    (out / "redis").mkdir(parents=True)
    (out / "redis" / "appendonly.aof").write_text("x")
    ckpt = out / "checkpoints" / "student-learner" / "ckpt-00000003"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text("{}")
    (out / "metrics.jsonl").write_text("{}\n")


def test_a_fresh_folder_starts_and_records_its_config(tmp_path):
    out = tmp_path / "run"
    prepared = prepare_run_folder(cfg_for(out), SMOKE, now="t0")
    assert not prepared.resumed and not prepared.started_over
    record = read_record(out)
    assert record["config"] == config_that_matters(cfg_for(out)) and record["steps_done"] is None
    assert record["history"] == [{"at": "t0", "overrides": SMOKE, "action": "start"}]


def test_operational_keys_and_steps_are_not_part_of_the_fingerprint(tmp_path):
    a = config_that_matters(cfg_for(tmp_path / "a"))
    b = config_that_matters(cfg_for(tmp_path / "b", "train.steps=400", "cluster.max_restarts=1",
                                    "train.stall_timeout_s=5", "train.log_every=3", "train.checkpoint_every=2"))
    assert a == b
    assert "train.batch_size" in a and "cluster.student_learner_ranks" in a and "train.steps" not in a


def test_the_same_config_resumes(tmp_path):
    out = tmp_path / "run"
    prepare_run_folder(cfg_for(out), SMOKE)
    leave_state(out)
    prepared = prepare_run_folder(cfg_for(out, "train.steps=8"), SMOKE)  # more steps: an extension is a resume
    assert prepared.resumed
    assert [h["action"] for h in read_record(out)["history"]] == ["start", "resume"]


def test_another_config_is_refused_naming_the_keys_and_the_options(tmp_path):
    out = tmp_path / "run"
    prepare_run_folder(cfg_for(out), SMOKE)
    leave_state(out)
    with pytest.raises(RunFolderRefused) as e:
        prepare_run_folder(cfg_for(out, "train.batch_size=4", "algo.lr_student=0.5"), SMOKE)
    lines = str(e.value).splitlines()
    assert lines[0] == f"{out} holds a run of another config; 2 keys differ (recorded -> now):"
    assert lines[1:3] == ["  algo.lr_student: 1e-05 -> 0.5", "  train.batch_size: 2 -> 4"]
    assert lines[3] == ("Use a new folder (train.output_dir=<another folder>), start over in it (train.resume=false: "
                        "deletes its Redis data, learner checkpoints, metrics.jsonl and summary.json), or resume it "
                        "with this config anyway (train.resume_with_changes=true).")
    assert read_record(out)["history"][-1]["action"] == "start"  # nothing written on refusal


def test_resume_with_changes_is_an_explicit_opt_in_and_is_recorded(tmp_path):
    out = tmp_path / "run"
    prepare_run_folder(cfg_for(out), SMOKE)
    leave_state(out)
    prepared = prepare_run_folder(cfg_for(out, "train.batch_size=4", "train.resume_with_changes=true"), SMOKE)
    assert prepared.resumed and prepared.changed == ("train.batch_size",)
    record = read_record(out)
    assert record["history"][-1]["changed"] == {"train.batch_size": [2, 4]}
    assert record["config"]["train.batch_size"] == 4  # the folder now belongs to the new config


def test_resume_false_starts_the_folder_over(tmp_path):
    out = tmp_path / "run"
    prepare_run_folder(cfg_for(out), SMOKE)
    leave_state(out)
    prepared = prepare_run_folder(cfg_for(out, "train.batch_size=4", "train.resume=false"), SMOKE)
    assert prepared.started_over and not prepared.resumed
    assert not (out / "redis").exists() and not (out / "checkpoints" / "student-learner").exists()
    assert not (out / "metrics.jsonl").exists()
    assert [h["action"] for h in read_record(out)["history"]] == ["start over"]


def test_a_record_alone_is_nothing_to_resume(tmp_path):
    out = tmp_path / "run"
    prepare_run_folder(cfg_for(out), SMOKE)  # then stopped before its Redis started
    prepared = prepare_run_folder(cfg_for(out, "train.batch_size=4"), SMOKE)
    assert not prepared.resumed and read_record(out)["config"]["train.batch_size"] == 4
    assert [h["action"] for h in read_record(out)["history"]] == ["start"]


def test_a_folder_without_a_record_is_refused(tmp_path):
    out = tmp_path / "run"
    leave_state(out)
    with pytest.raises(RunFolderRefused, match=r"holds a run without a record of its config \(no run.json"):
        prepare_run_folder(cfg_for(out), SMOKE)


def test_a_complete_run_has_nothing_to_do(tmp_path):
    out = tmp_path / "run"
    cfg = cfg_for(out)
    prepare_run_folder(cfg, SMOKE)
    leave_state(out)
    record_finished(cfg, 4)
    with pytest.raises(NothingToDo) as e:
        prepare_run_folder(cfg, SMOKE)
    assert str(e.value) == (f"nothing to do: {out} already has 4/4 steps (raise train.steps to train on; "
                            "train.resume=false starts over)")
    with pytest.raises(NothingToDo, match=r"already has 4 steps, train.steps=2 "):
        prepare_run_folder(cfg_for(out, "train.steps=2"), SMOKE)
    assert prepare_run_folder(cfg_for(out, "train.steps=6"), SMOKE).resumed


def test_checkpointed_steps_reads_the_newest_complete_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert checkpointed_steps(cfg_for(out)) == 0
    leave_state(out)
    (out / "checkpoints" / "student-learner" / "ckpt-00000005.tmp-1").mkdir()  # a half-written one
    assert checkpointed_steps(cfg_for(out)) == 3


def test_a_prompt_file_counts_by_its_content_not_its_place(tmp_path):
    first, moved = tmp_path / "a.txt", tmp_path / "b.txt"
    for f in (first, moved):
        f.write_text("a red ball falls\na blue ball bounces\na green ball rolls to the left\n")
    out = tmp_path / "run"
    prepare_run_folder(cfg_for(out, f"prompts={first}"), SMOKE)
    leave_state(out)
    assert prepare_run_folder(cfg_for(out, f"prompts={moved}"), SMOKE).resumed
    moved.write_text("a red ball falls\na blue ball bounces\na yellow ball rolls to the right\n")
    with pytest.raises(RunFolderRefused, match=r"1 key differs .*\n  prompts.sha256: \"sha256:[0-9a-f]{16}\" -> "
                                                r"\"sha256:[0-9a-f]{16}\"\n"):
        prepare_run_folder(cfg_for(out, f"prompts={moved}"), SMOKE)
