"""Learner checkpoints: state round trips, atomic numbered folders, run binding, the ack-after-checkpoint ledger."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from afd_async.runtime.busy import BusyMeter
from afd_async.runtime.d_history import DHistory
from afd_async.runtime.checkpoint_writer import CheckpointFailed, CheckpointWriter
from afd_async.runtime.learner_state import Checkpointer, CheckpointStore, Ledger, flatten_state, unflatten_state


def _nested() -> dict:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "opt": opt.state_dict(), "steps": 7, "rng": torch.get_rng_state(),
            "nested": [1, 2.5, None, "x", {3: True}]}


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def test_flatten_round_trip_keeps_tensors_int_keys_and_optimizer_state():
    state = _nested()
    tensors, skeleton = flatten_state(state)
    back = unflatten_state(tensors, skeleton)
    assert _equal(state["model"], back["model"]) and _equal(state["rng"], back["rng"])
    assert list(back["opt"]["state"]) == [0, 1]  # int keys survive
    assert back["opt"]["param_groups"][0]["betas"] == [0.5, 0.999]
    model = torch.nn.Linear(3, 2)
    torch.optim.AdamW(model.parameters(), lr=1.0).load_state_dict(back["opt"])  # loadable
    tensors["model/weight"].add_(1)  # copies: the live state is untouched
    assert not torch.equal(tensors["model/weight"], state["model"]["weight"])


def test_store_is_atomic_keeps_the_newest_and_skips_a_torn_write(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for i in (1, 2, 3):
        store.save(i, {"i": i, "t": torch.full((2,), float(i))})
    assert store.indices() == [2, 3]
    (tmp_path / "ckpt-00000009.tmp-1").mkdir()  # a writer died before the rename: never read
    (tmp_path / "ckpt-00000008").mkdir()  # no state.json: incomplete, never read
    index, state = store.load_latest()
    assert index == 3 and state["i"] == 3 and torch.equal(state["t"], torch.full((2,), 3.0))
    (store.path(3) / "state.safetensors").write_bytes(b"garbage")
    index, state = store.load_latest()  # unreadable newest: the previous one
    assert index == 2 and state["i"] == 2


def test_store_discards_another_runs_state(tmp_path):
    store = CheckpointStore(tmp_path)
    store.bind_run("run-a")
    store.save(4, {"x": 1})
    store.bind_run("run-a")
    assert store.indices() == [4]
    store.bind_run("run-b")  # a new Redis: the old ledger would skip its groups
    assert store.indices() == [] and (tmp_path / "run_id").read_text() == "run-b"


class _Learner:
    def __init__(self) -> None:
        self.w = torch.zeros(2)

    def state_dict(self) -> dict:
        return {"w": self.w}

    def load_state_dict(self, state: dict) -> None:
        self.w = state["w"].clone()


def test_acks_wait_for_the_checkpoint_and_redeliveries_are_not_retrained(tmp_path):
    acked: list[str] = []
    learner = _Learner()
    ckpt = Checkpointer(CheckpointStore(tmp_path), learner, every=2, ack=acked.append)
    learner.w += 1
    assert not ckpt.trained(0, {"pair_ids": ["p0"]}, ["b0"]) and acked == []  # trained, not durable: no ack
    ckpt.duplicate(0, "b0-again")  # a redelivery of a trained, not yet durable group: its ack waits too
    assert acked == []
    learner.w += 1
    assert ckpt.trained(1, {}, ["b1"]) and acked == ["b0", "b0-again", "b1"]  # checkpoint, then acks
    ckpt.duplicate(1, "b1-again")  # durable already: acked at once
    assert acked[-1] == "b1-again"
    learner.w += 1
    ckpt.trained(2, {}, ["b2"])  # then the process dies: b2 is neither durable nor acked
    with pytest.raises(ValueError):
        ckpt.ledger.record(2, {}, [])  # the ledger refuses to count a group twice

    resumed = _Learner()
    again = Checkpointer(CheckpointStore(tmp_path), resumed, every=2, ack=acked.append)
    assert again.restore()
    assert torch.equal(resumed.w, torch.full((2,), 2.0)) and again.ledger.trained == [0, 1]
    assert again.ledger.has(1) and not again.ledger.has(2)  # group 2 comes back and is trained again
    assert again.ledger.incarnation == 1 and again.ledger.recent[0]["pair_ids"] == ["p0"]


def test_ledger_state_round_trip():
    ledger = Ledger(recent=2)
    for g in (5, 6, 7):
        ledger.record(g, {"pair_ids": [f"p{g}"], "stream_ids": [f"{g}-0"]}, [g])
    back = Ledger(recent=2)
    back.load_state_dict(ledger.state_dict())
    assert back.trained == [5, 6, 7] and back.durable == 3 and back.is_durable(6)
    assert [e["group"] for e in back.recent] == [6, 7] and back.pending == []


def test_d_history_records_per_step_and_prunes_below_a_checkpoint(tmp_path):
    h = DHistory(tmp_path)
    h.record(3, 10, {"w": torch.ones(2)})
    h.record(3, 11, {"w": torch.zeros(2)})  # a step keeps the D its first attempt used
    h.record(5, 12, {"w": torch.full((2,), 5.0)})
    version, sd = h.lookup(3)
    assert version == 10 and torch.equal(sd["w"], torch.ones(2))
    assert h.lookup(4) is None and h.redo_until == 5
    h.prune(below_step=4)
    assert h.lookup(3) is None and h.lookup(5)[0] == 12
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_busy_meter_counts_from_the_first_batch_on():
    now = [0.0]
    meter = BusyMeter(clock=lambda: now[0])
    now[0] = 5.0
    meter.add(step=4.0, batch_wait=1.0)  # the first batch (start-up) is not counted
    now[0] = 7.0
    meter.add(step=1.5, batch_wait=0.5)
    assert meter.ratio == pytest.approx(0.75)
    assert meter.breakdown() == pytest.approx({"batch_wait": 0.25, "step": 0.75, "unaccounted": 0.0})


def test_background_checkpoint_snapshots_at_the_step_and_acks_once_durable(tmp_path):
    acked: list[str] = []
    learner = _Learner()
    ckpt = Checkpointer(CheckpointStore(tmp_path), learner, every=2, ack=acked.append, background=True)
    learner.w += 1
    assert not ckpt.trained(0, {}, ["b0"])
    learner.w += 1
    assert ckpt.trained(1, {}, ["b1"])  # due: snapshot taken, file written on the thread
    learner.w.add_(100)  # the next step changes the live state in place: the checkpoint must not see it
    assert acked == []  # not known durable yet: no ack
    ckpt.duplicate(1, "b1-again")  # its group is in the checkpoint being written: waits too
    assert not ckpt.trained(2, {}, ["b2"])  # waits for the write, then releases what it covers
    assert acked == ["b0", "b1"] and ckpt.ledger.durable == 2
    index, state = CheckpointStore(tmp_path).load_latest()
    assert index == 2 and torch.equal(state["learner"]["w"], torch.full((2,), 2.0))
    assert state["ledger"]["trained"] == [0, 1]
    ckpt.checkpoint()  # the stop: synchronous, everything trained is on disk and acked when it returns
    assert acked == ["b0", "b1", "b1-again", "b2"]
    ckpt.close()
    assert CheckpointStore(tmp_path).indices() == [2, 3]
    assert torch.equal(CheckpointStore(tmp_path).load(3)["learner"]["w"], torch.full((2,), 102.0))


def _break_folder(store: CheckpointStore) -> None:
    """Make every later write in `store` fail for real: its folder becomes a file."""
    for child in store.dir.iterdir():
        child.unlink() if child.is_file() else shutil.rmtree(child)
    store.dir.rmdir()
    store.dir.write_text("not a folder")


def test_a_failed_background_write_is_raised_at_the_next_step_and_its_batches_stay_unacked(tmp_path):
    acked: list[str] = []
    store = CheckpointStore(tmp_path / "ck")
    ckpt = Checkpointer(store, _Learner(), every=1, ack=acked.append, background=True)
    _break_folder(store)
    assert ckpt.trained(0, {}, ["b0"])  # the write fails on the thread
    with pytest.raises(CheckpointFailed, match="checkpoint 1") as err:
        ckpt.trained(1, {}, ["b1"])
    assert isinstance(err.value.__cause__, OSError)
    assert acked == [] and ckpt.ledger.pending == ["b0", "b1"] and ckpt.ledger.durable == 0


def test_a_failed_background_write_is_raised_at_close(tmp_path):
    store = CheckpointStore(tmp_path / "ck")
    ckpt = Checkpointer(store, _Learner(), every=1, ack=lambda b: None, background=True)
    _break_folder(store)
    assert ckpt.trained(0, {}, ["b0"])
    with pytest.raises(CheckpointFailed):
        ckpt.close()  # the learner is ending: the error is not lost with the thread


def test_checkpoint_writer_refuses_two_writes_at_once(tmp_path):
    store = CheckpointStore(tmp_path)
    writer = CheckpointWriter(store.write)
    writer.submit(1, *flatten_state({"t": torch.ones(3)}))
    with pytest.raises(RuntimeError, match="still being written"):
        writer.submit(2, *flatten_state({"t": torch.zeros(3)}))
    assert writer.wait() == store.path(1) and writer.wait() is None
    writer.close()
    assert torch.equal(store.load(1)["t"], torch.ones(3))


def test_snapshots_copy_every_dtype_and_layout_and_reuse_buffers_only_where_they_match():
    state = {"bf16": torch.randn(3, 4).to(torch.bfloat16), "bool": torch.tensor([True, False]),
             "complex": torch.randn(3, dtype=torch.complex64), "conj": torch.randn(2, dtype=torch.complex64).conj(),
             "strided": torch.arange(12.0).reshape(3, 4).t(), "scalar": torch.tensor(7), "empty": torch.zeros(0)}
    first, _ = flatten_state(state)
    assert all(_equal(state[k], first[k]) and first[k].is_contiguous() for k in state)
    state["bf16"].add_(1)
    state["scalar"] = torch.tensor([1, 2])  # another shape: a new buffer
    again, _ = flatten_state(state, reuse=first)
    assert all(_equal(state[k], again[k]) for k in state)
    assert again["bf16"].data_ptr() == first["bf16"].data_ptr()  # same shape and dtype: written in place
    assert again["scalar"].data_ptr() != first["scalar"].data_ptr()


def test_every_background_checkpoint_holds_the_state_of_its_own_step(tmp_path):
    learner = _Learner()
    ckpt = Checkpointer(CheckpointStore(tmp_path, keep=5), learner, every=1, ack=lambda b: None, background=True)
    for step in range(4):
        learner.w.fill_(float(step))
        assert ckpt.trained(step, {}, [step])
        learner.w.fill_(-1.0)  # the next step's in-place update, while the write may still run
    ckpt.close()
    store = CheckpointStore(tmp_path)
    assert store.indices() == [1, 2, 3, 4]
    for index in store.indices():  # snapshots reuse the last one's buffers: each file is still its own step's
        assert torch.equal(store.load(index)["learner"]["w"], torch.full((2,), float(index - 1)))
