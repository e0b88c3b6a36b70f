"""Data-parallel learners through torchrun on the gloo backend (2 CPU processes): same run as one process.

The real updaters run under DDP with each rank on its block of every global
batch; the single-process run is the reference. Adam turns last-bit gradient
differences (a different all-reduce summation order) into ±lr steps on
parameters whose gradient is ~0, so weights are compared in bulk (99.9% of
entries) and bounded by the optimizer's step size everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from afd_async.launch.run import reserve_port

LR, STEPS = 1e-3, 3


def _run(args: list[str], *, ranks: int = 0, port: int = 0) -> None:
    cmd = [sys.executable, "-m", "afd_async.train.replica_check", *args]
    if ranks:
        torchrun = shutil.which("torchrun")
        assert torchrun, "torchrun comes with torch"
        cmd = [torchrun, "--nnodes", "1", "--nproc-per-node", str(ranks), "--master-addr", "127.0.0.1",
               "--master-port", str(port), "-m", "afd_async.train.replica_check", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def _losses(folder: Path) -> list[dict[str, float]]:
    return json.loads((folder / "result.json").read_text())["log"]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    state = torch.load(folder / "final.pt", weights_only=False)
    return {**{f"s.{k}": v for k, v in state["student"]["student"].items()},
            **{f"d.{k}": v for k, v in state["d"]["d"].items()}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    common = ["--steps", str(STEPS), "--batch", "8", "--backend", "gloo"]
    _run(["--out", str(root / "ref"), *common])
    _run(["--out", str(root / "ddp"), *common, "--save", str(root / "ckpt.pt"), "--save-at", "2"],
         ranks=2, port=reserve_port())
    _run(["--out", str(root / "resumed"), *common, "--resume", str(root / "ckpt.pt")], ranks=2, port=reserve_port())
    return root


def test_two_gloo_ranks_reproduce_the_single_process_losses(runs: Path) -> None:
    ref, ddp = _losses(runs / "ref"), _losses(runs / "ddp")
    assert json.loads((runs / "ddp" / "result.json").read_text())["world_size"] == 2
    assert len(ref) == len(ddp) == STEPS
    for a, b in zip(ref, ddp):
        for key in ("d_loss", "student_loss", "nft_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)


def test_two_gloo_ranks_end_with_the_single_process_weights(runs: Path) -> None:
    ref, ddp = _weights(runs / "ref"), _weights(runs / "ddp")
    assert ref.keys() == ddp.keys()
    diff = torch.cat([(ref[k].float() - ddp[k].float()).abs().flatten() for k in ref])
    ckpt = torch.load(runs / "ckpt.pt", weights_only=False)  # the same run two steps in
    before = {**{f"s.{k}": v for k, v in ckpt["student"]["student"].items()},
              **{f"d.{k}": v for k, v in ckpt["d"]["d"].items()}}
    last_step = torch.cat([(ddp[k].float() - before[k].float()).abs().flatten() for k in ddp])
    assert diff.mean() < 0.01 * last_step.mean()  # one step moves weights 100x more than ranks-vs-one differ
    assert diff.max() <= 2 * LR * STEPS


def test_resume_from_a_two_rank_checkpoint_continues_the_same_run(runs: Path) -> None:
    whole, resumed = _losses(runs / "ddp"), _losses(runs / "resumed")
    assert [r["step"] for r in resumed] == [2.0]  # it started after the checkpoint's two steps
    assert resumed[0]["student_loss"] == pytest.approx(whole[2]["student_loss"], rel=1e-6)
    assert resumed[0]["d_loss"] == pytest.approx(whole[2]["d_loss"], rel=1e-6)
    a, b = _weights(runs / "ddp"), _weights(runs / "resumed")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
