"""The real-scale training path at a tiny Wan config, end to end on CPU.

Causal Wan student with LoRA policies (θ adapter `default`, θ_old adapter `old`,
θ_ref = base), UMT5 text features cached per prompt, Wan VAE decode before D,
VideoReward D on prompt strings. Every weight is a tiny random file this test
writes (afd_async/testing/wan_assets.py) in the format a user would point the config at (our safetensors for the
student, diffusers-layout VAE safetensors, transformers folders with tokenizers
for UMT5 and Qwen2-VL).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from afd_async.algo.policy import eta_schedule  # noqa: E402
from afd_async.config import load_config  # noqa: E402
from afd_async.testing.wan_assets import write_wan_assets  # noqa: E402
from afd_async.train.report import read_metrics  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> list[str]:
    return write_wan_assets(tmp_path_factory.mktemp("wan_assets"), "tiny")


def _adapter(pol, name: str) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in pol.adapter_params(name).items()}


def test_sync_steps_train_lora_only_and_soft_update_old(assets, tmp_path) -> None:
    from afd_async.models.wan.lora import LoraPolicies
    from afd_async.train.sync_loop import SyncLoop

    cfg = load_config(["experiment=wan_tiny", *assets, f"train.output_dir={tmp_path / 'out'}",
                       f"text.cache_dir={tmp_path / 'text'}", "algo.eta_rate=0.25", "algo.lr_student=1e-2"])
    loop = SyncLoop(cfg)
    pol = loop.s_upd.policies
    assert isinstance(pol, LoraPolicies)
    base = {n: p.detach().clone() for n, p in loop.student.named_parameters() if ".lora_" not in n}
    theta0 = _adapter(pol, "default")

    batch = loop.make_batch(0)
    assert batch.text.shape == (2, 16, 16)  # UMT5 features, text_len 16, d_model 16
    assert batch.student.shape == (2, 4, 6, 4, 6)  # latents: 4 channels, 6 latent frames, 32x48 / 8
    assert batch.student_rgb.shape == batch.teacher.shape == (2, 3, 21, 32, 48)  # decoded RGB for D
    cached = list((tmp_path / "text").glob("*.pt"))
    assert cached and all(torch.load(f).shape[1] == 16 for f in cached)  # trimmed per-prompt UMT5 features

    warm = loop.warmup_d()
    assert math.isfinite(warm["d_loss"])
    for _ in range(cfg.train.steps):
        old_prev = _adapter(pol, "old")
        m = loop.step()
        for key in ("student_loss", "nft_loss", "ref_loss", "d_loss", "score_mean"):
            assert math.isfinite(m[key]), (key, m)
        eta = eta_schedule(loop.s_upd.steps, rate=cfg.algo.eta_rate, eta_max=cfg.algo.eta_max)
        assert 0 < eta < 1
        theta = _adapter(pol, "default")
        for k, v in _adapter(pol, "old").items():
            want = eta * old_prev[k] + (1 - eta) * theta[k.replace(".old.", ".default.")]
            torch.testing.assert_close(v, want)
    for n, p in loop.student.named_parameters():
        if ".lora_" not in n:
            assert torch.equal(p, base[n]), f"base weight {n} changed"
    changed = [k for k, v in _adapter(pol, "default").items() if not torch.equal(v, theta0[k])]
    assert any(".lora_B." in k for k in changed)
    ema = _adapter(pol, "ema")
    assert any(not torch.equal(ema[k.replace(".default.", ".ema.")], theta0[k]) for k in changed)

    state = loop.s_upd.state_dict()  # learner checkpoints: adapters + optimizer, no base copies
    assert set(state) == {"lora", "ema", "opt", "steps", "version"} and state["version"] == 2
    loop.s_upd.load_state_dict(state)
    d_state = loop.d_upd.state_dict()["d"]
    assert d_state and all(".lora_" in k or k.startswith("rm_head.") for k in d_state)  # D publishes trained tensors


def test_afd_run_smoke(assets, tmp_path) -> None:
    """`afd run` with every role a process: the Wan actor decodes for D, learners exchange adapter-only weights."""
    from safetensors import safe_open

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "afd_async.cli", "run", "experiment=wan_tiny", *assets,
                           "replay.staleness=0", f"train.output_dir={out}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["mode"] == "async"
    assert int(summary["status"]["pairs_written"]) == (1 + 2) * 2  # 1 warm-up + 2 training groups of 2 pairs
    train = [r for r in read_metrics(out / "metrics.jsonl") if r.get("phase") == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(math.isfinite(r[k]) for r in train for k in ("student_loss", "nft_loss", "score_mean"))
    with safe_open(str(out / "student_final.safetensors"), "pt") as f:  # θ_old as published: its adapter only
        keys = list(f.keys())
    assert keys and all(".lora_A.old." in k or ".lora_B.old." in k for k in keys)
    with safe_open(str(out / "discriminator_final.safetensors"), "pt") as f:  # D's trained tensors only
        keys = list(f.keys())
    assert keys and all(".lora_" in k or k.startswith("rm_head.") for k in keys)

    # the figures benchmarks/wan_afd_run.sh reports at 1.3B (issue 20.4), from this run's own records
    fig = _wan_afd_report().report(out, batch_size=2)
    assert fig["steps"] == 2 and fig["finished"] and fig["pairs_written"] == 6 and fig["s_per_step"] > 0
    assert set(fig["busy"]) == {"student-actor", "d-learner", "student-learner"}
    assert fig["gpu_mem_gib"] == {}  # a CPU run has no GPU peak to report (never a zero)
    sync = fig["weight_sync_parts_s"]
    assert sync["publish_s"] > 0 and sync["actor_syncs"] >= 1 and sync["actor_fetch_load_s"] > 0  # k=0: the actor waits
    assert fig["weight_sync_s"] == round(sync["publish_s"] + sync["actor_fetch_load_s"], 4)
    assert fig["profile_s"]["time_step_s"] > 0 and fig["profile_s"]["actor_group_s"] > 0


def _wan_afd_report():
    """benchmarks/wan_afd_report.py as a module (benchmarks/ is scripts, not a package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "wan_afd_report.py"
    spec = importlib.util.spec_from_file_location("wan_afd_report", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
