"""`train.device`: checked where a role starts, and the pieces that put work on it keep every value.

The CPU runs' results are pinned by the staleness-0 oracle (tests/integration/test_afd_run.py); these
tests pin the device plumbing underneath: the config check, `PairBatch.to`, the CPU-drawn noise and
the factories' "build on CPU, then move" (same initial weights on any device). The CUDA cases carry
the `gpu` marker and skip without a GPU.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from afd_async.cli import main as afd_main
from afd_async.config import load_config
from afd_async.config.convert import ConfigError
from afd_async.config.train import resolve_device
from afd_async.models.factory import make_discriminator, make_student
from afd_async.train.batch import PairBatch
from afd_async.train.seeding import randn_on, step_generator

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(HAS_CUDA, reason="checks the error on a machine without CUDA")


def _smoke(*extra: str):
    return load_config(["experiment=smoke", "text.kind=hash", *extra])


# ------------------------------------------------------------------------------------- config check

def test_device_syntax_is_checked_at_config_load():
    with pytest.raises(ConfigError, match=r"config\.train: device must be cpu, cuda, cuda:<index> or mps, got 'meta'"):
        load_config(["train.device=meta"])
    assert load_config(["train.device=cuda:1"]).train.device == "cuda:1"  # availability: where the role starts


def test_resolve_device_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


def test_unavailable_cuda_index_names_the_key():
    missing = f"cuda:{torch.cuda.device_count() + 7}"  # never visible, with or without a GPU
    with pytest.raises(ConfigError, match=rf"train\.device='{missing}'"):
        resolve_device(missing)


@no_cuda
def test_cuda_without_cuda_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.device='cuda' but CUDA is not available.*set train\.device=cpu"):
        resolve_device("cuda")


@no_cuda
@pytest.mark.parametrize("role", ["student_actor", "d_learner", "student_learner"])
def test_roles_refuse_cuda_at_start(role):
    """Before any port, Redis connection or model: the error is the config's, not torch's."""
    wiring = importlib.import_module(f"afd_async.launch.roles.{role}")

    cfg = _smoke("train.device=cuda", "cluster.redis_url=redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match=r"train\.device='cuda' but CUDA is not available"):
        getattr(wiring, f"run_{role}")(cfg)


@no_cuda
def test_afd_sync_cuda_without_cuda_is_a_configuration_error(tmp_path, capsys):
    rc = afd_main(["sync", "experiment=smoke", "text.kind=hash", "train.device=cuda", "train.steps=1",
                   f"train.output_dir={tmp_path / 'out'}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "afd: configuration error: train.device='cuda' but CUDA is not available" in err
    assert not (tmp_path / "out").exists()  # refused before the run folder is written


# ------------------------------------------------------------------------------------- PairBatch.to

def _batch(*, rgb: bool) -> PairBatch:
    g = torch.Generator().manual_seed(3)
    student = torch.rand((4, 3, 4, 8, 8), generator=g).to(torch.bfloat16)
    return PairBatch(
        prompt_ids=["a", "a", "b", "c"], prompts=["pa", "pa", "pb", "pc"], text=torch.rand((4, 16), generator=g),
        teacher=torch.rand((4, 3, 4, 8, 8), generator=g) * 2 - 1, student=student,
        student_rgb=torch.rand((4, 3, 4, 8, 8), generator=g) if rgb else None,
        policy_version=torch.tensor([5, 5, 4, 3]),
    )


def _check_moved(src: PairBatch, out: PairBatch, device: torch.device) -> None:
    assert out.prompt_ids == src.prompt_ids and out.prompts == src.prompts
    for name in ("text", "teacher", "student", "student_rgb", "policy_version"):
        a, b = getattr(src, name), getattr(out, name)
        assert b.device == device, name
        assert b.dtype == a.dtype, name
        assert b.shape == a.shape, name
        assert torch.equal(b.cpu(), a), name


@pytest.mark.parametrize("rgb", [False, True])
def test_pair_batch_to_cpu_keeps_values_and_dtypes(rgb):
    src = _batch(rgb=rgb)
    out = src.to("cpu")
    _check_moved(src, out, torch.device("cpu"))
    assert (out.student_rgb is out.student) == (not rgb)  # a pixel-space batch stays one tensor
    assert torch.equal(out.group_ids(), torch.tensor([0, 0, 1, 2]))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("rgb", [False, True])
def test_pair_batch_to_cuda(rgb):
    src = _batch(rgb=rgb)
    out = src.to("cuda")
    _check_moved(src, out, torch.device("cuda", 0))
    assert out.group_ids().device.type == "cuda"


# ------------------------------------------------------------------------------------- noise

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_randn_on_draws_what_the_generator_draws_on_cpu(dtype):
    shape = (2, 3, 4, 5)
    got = randn_on(shape, step_generator(7, 2, "train"), device="cpu", dtype=dtype)
    want = torch.randn(shape, generator=step_generator(7, 2, "train"), dtype=dtype)
    assert got.device == torch.device("cpu") and got.dtype == dtype
    assert torch.equal(got, want)
    assert not torch.equal(got, randn_on(shape, step_generator(7, 3, "train"), device="cpu", dtype=dtype))


def test_randn_on_without_generator_uses_the_global_cpu_rng():
    torch.manual_seed(11)
    got = randn_on((3, 4), None, device="cpu")
    torch.manual_seed(11)
    assert torch.equal(got, torch.randn((3, 4)))


@pytest.mark.gpu
@needs_cuda
def test_randn_on_cuda_is_the_cpu_noise_moved():
    g_cpu, g_gpu = step_generator(7, 2, "train"), step_generator(7, 2, "train")
    got = randn_on((2, 3, 4), g_gpu, device="cuda", dtype=torch.bfloat16)
    assert got.device.type == "cuda" and got.dtype == torch.bfloat16
    assert torch.equal(got.cpu(), randn_on((2, 3, 4), g_cpu, device="cpu", dtype=torch.bfloat16))


# ------------------------------------------------------------------------------------- factories

def _build(device: str):
    cfg = _smoke()
    torch.manual_seed(cfg.train.seed)
    student = make_student(cfg.student, 384, device)
    d = make_discriminator(cfg.discriminator, 384, device)
    return student, d, torch.rand(4)  # the next global draw: the factories drew what they always drew


def test_factories_put_models_on_the_device_with_the_default_draws():
    cfg = _smoke()
    torch.manual_seed(cfg.train.seed)
    ref_s, ref_d, ref_next = make_student(cfg.student, 384), make_discriminator(cfg.discriminator, 384), torch.rand(4)
    student, d, nxt = _build("cpu")
    assert torch.equal(nxt, ref_next)
    for got, ref in ((student, ref_s), (d, ref_d)):
        assert {p.device for p in got.parameters()} == {torch.device("cpu")}
        for (k, a), (_, b) in zip(got.state_dict().items(), ref.state_dict().items()):
            assert torch.equal(a, b), k


@pytest.mark.gpu
@needs_cuda
def test_factories_cuda_weights_equal_cpu_weights():
    cpu_s, cpu_d, cpu_next = _build("cpu")
    gpu_s, gpu_d, gpu_next = _build("cuda")
    assert torch.equal(cpu_next, gpu_next)
    for got, ref in ((gpu_s, cpu_s), (gpu_d, cpu_d)):
        assert {p.device.type for p in got.parameters()} == {"cuda"}
        for (k, a), (_, b) in zip(got.state_dict().items(), ref.state_dict().items()):
            assert torch.equal(a.cpu(), b), k
