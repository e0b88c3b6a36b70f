"""Bad checkpoints: each refusal is a `CheckpointError` naming the key (or the file), and the
module being loaded keeps its weights (nothing half-loaded)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from afd_async.checkpoint import CheckpointError, load_into, load_module, read_checkpoint, save_module


class Net(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.config = {"width": width}
        self.a = nn.Linear(width, width)
        self.b = nn.Linear(width, 2)


def _same(x: nn.Module, y: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(x.state_dict().values(), y.state_dict().values()))


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda sd: sd.pop("b.bias"), r"missing key 'b\.bias' \(1 missing in all\)"),
    (lambda sd: sd.update(extra=torch.zeros(1)), r"unexpected key 'extra'"),
    (lambda sd: sd.update({"a.weight": torch.zeros(4, 5)}), r"key 'a\.weight' has shape \(4, 5\), model expects \(4, 4\)"),
    (lambda sd: sd["b.weight"].__setitem__((0, 1), float("nan")), r"key 'b\.weight' contains NaN or Inf"),
    (lambda sd: sd["a.bias"].__setitem__(2, float("-inf")), r"key 'a\.bias' contains NaN or Inf"),
])
def test_mismatched_checkpoint_names_the_key_and_loads_nothing(tmp_path: Path, edit, fragment: str) -> None:
    torch.manual_seed(0)
    saved = Net()
    sd = {k: v.clone() for k, v in saved.state_dict().items()}
    edit(sd)
    path = tmp_path / "ckpt.safetensors"
    save_file(sd, str(path), metadata={"config": '{"width": 4}', "meta": "{}"})
    target = Net()
    before = copy.deepcopy(target)
    with pytest.raises(CheckpointError, match=fragment) as info:
        load_into(target, read_checkpoint(path)[0], source=str(path))
    assert str(path) in str(info.value)
    assert _same(target, before)  # strict check first, so nothing was half-loaded


@pytest.mark.parametrize("damage", ["truncate", "garbage", "header", "empty", "missing"])
def test_unreadable_checkpoint_names_the_file(tmp_path: Path, damage: str) -> None:
    path = save_module(tmp_path / "ok.safetensors", Net(), meta={"step": 3})
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) - 7])
    elif damage == "garbage":
        path.write_bytes(torch.randint(0, 256, (len(data),), dtype=torch.uint8).numpy().tobytes())
    elif damage == "header":
        path.write_bytes(data[:8] + b"{not json" + data[17:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
        load_module(path, lambda cfg: Net(**cfg))
    assert str(path) in str(info.value)


def test_round_trip_rebuilds_from_its_own_config(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = Net(width=6)
    path = save_module(tmp_path / "n.safetensors", net, meta={"step": 9})
    got, meta = load_module(path, lambda cfg: Net(**cfg))
    assert meta == {"step": 9} and got.config == {"width": 6} and _same(got, net)


def test_student_pretrained_on_another_text_encoder_is_refused_by_name() -> None:
    from afd_async.config import load_config
    from afd_async.models.factory import make_student

    cfg = load_config([])  # the shipped student, pretrained on text.kind=hash prompt vectors
    assert make_student(cfg.student, 384, text_kind="hash").text_tokens is not None
    with pytest.raises(CheckpointError, match=r"pretrained on text\.kind=hash prompt vectors, config asks for "
                                              r"text\.kind=minilm: set text\.kind=hash"):
        make_student(cfg.student, 384, text_kind="minilm")  # same 384-d vectors: it would run, reading nothing
    old = load_config(["student.text_to_tokens=false"])
    with pytest.raises(CheckpointError, match="trained with text_to_tokens=True, config asks for text_to_tokens=False"):
        make_student(old.student, 384, text_kind="hash")
