"""The tiny causal student: block-causal training forward, KV-cached rollout, and their agreement."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from afd_async.checkpoint import load_module, save_module
from afd_async.models import StudentTrajectory, TinyCausalStudent
from afd_async.models.schedule import rollout_sigmas

CF = 2  # chunk frames
FRAMES = 6  # 3 chunks
STEPS = [1000, 750, 500, 250]
SHIFT = 5.0
SMALL = dict(channels=3, height=16, width=16, chunk_frames=CF, patch_size=4, dim=32, depth=2, heads=2,
             mlp_ratio=2.0, text_dim=8, max_frames=16)


def _student(seed: int = 0, dtype: torch.dtype = torch.float32, randomize: bool = True,
             cross_attention: bool = False, text_to_tokens: bool = False) -> TinyCausalStudent:
    """A small student; `randomize` replaces the adaLN-Zero zeros so every path carries signal."""
    torch.manual_seed(seed)
    model = TinyCausalStudent(**SMALL, cross_attention=cross_attention, text_to_tokens=text_to_tokens).to(dtype)
    if randomize:
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=dtype))
    return model.eval()


def _inputs(b: int = 2, seed: int = 0, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(b, 3, FRAMES, 16, 16, generator=g, dtype=dtype)
    clean = torch.rand(b, 3, FRAMES, 16, 16, generator=g, dtype=dtype) * 2 - 1
    t = torch.rand(b, FRAMES // CF, generator=g, dtype=dtype)
    text = torch.randn(b, 8, generator=g, dtype=dtype)
    return x_t, t, text, clean


def _chunk(x: torch.Tensor, k: int) -> torch.Tensor:
    return x[:, :, k * CF : (k + 1) * CF]


def _rollout(model: TinyCausalStudent, text: torch.Tensor, seed: int = 3, **kw):
    kw.setdefault("num_frames", FRAMES)
    return model.rollout(text, generator=torch.Generator().manual_seed(seed), timesteps=STEPS, shift=SHIFT, **kw)


def test_config_roundtrip_and_default_size():
    model = _student()
    clone = TinyCausalStudent.from_config(dict(model.config))
    clone.load_state_dict(model.state_dict())
    x_t, t, text, clean = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x_t, t, text, clean), clone(x_t, t, text, clean), atol=1e-5, rtol=1e-5)
    default = TinyCausalStudent(height=32, width=32, chunk_frames=4, patch_size=4, dim=128, depth=4, heads=4,
                                mlp_ratio=4.0, text_dim=384)
    assert 0.8e6 < sum(p.numel() for p in default.parameters()) < 1.6e6


def test_checkpoint_and_deepcopy_roundtrip(tmp_path: Path):
    """Rebuilt from the safetensors checkpoint (config in metadata) or deep-copied (EMA / old policy), same rollout."""
    model = _student()
    text = _inputs()[2]
    loaded, _ = load_module(save_module(tmp_path / "s.safetensors", model), TinyCausalStudent.from_config)
    ref = _rollout(model, text)
    for other in (loaded.eval(), copy.deepcopy(model)):
        torch.testing.assert_close(_rollout(other, text), ref, atol=1e-5, rtol=0)


def test_untrained_student_is_stable():
    """adaLN-Zero: the fresh x0-predicting student predicts x0 = 0 exactly (v = x_t / t), and rollouts stay bounded."""
    model = _student(randomize=False)
    x_t, t, text, clean = _inputs()
    with torch.no_grad():
        v = model(x_t, t, text, clean)
        x0 = x_t - t.repeat_interleave(model.chunk_frames, dim=1)[:, None, :, None, None] * v
        assert x0.abs().max() < 1e-5
    video = _rollout(model, text)
    assert video.shape == (2, 3, FRAMES, 16, 16) and video.abs().max() <= 1


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_cached_rollout_equals_full_recompute(dtype, atol):
    model = _student(dtype=dtype)
    text = _inputs(dtype=dtype)[2]
    cached = _rollout(model, text, use_cache=True)
    oracle = _rollout(model, text, use_cache=False)
    assert cached.dtype == dtype and cached.abs().max() <= 1
    assert cached.std() > 0.1  # a real signal, not all-clamped or all-zero
    torch.testing.assert_close(cached, oracle, atol=atol, rtol=0)


def test_training_forward_is_block_causal():
    model = _student()
    x_t, t, text, clean = _inputs()
    with torch.no_grad():
        ref = model(x_t, t, text, clean)
        for k in range(FRAMES // CF):
            later = torch.zeros_like(x_t, dtype=torch.bool)
            later[:, :, (k + 1) * CF :] = True
            x2 = torch.where(later, torch.randn_like(x_t), x_t)
            c2 = torch.where(later, torch.rand_like(clean), clean)
            out = model(x2, t, text, c2)
            torch.testing.assert_close(out[:, :, : (k + 1) * CF], ref[:, :, : (k + 1) * CF], atol=1e-6, rtol=0)
        # the clean copy of chunk k is context for chunks > k only, never for noisy chunk k itself
        c3 = clean.clone()
        c3[:, :, CF : 2 * CF] = 0.5
        out = model(x_t, t, text, c3)
        torch.testing.assert_close(out[:, :, : 2 * CF], ref[:, :, : 2 * CF], atol=1e-6, rtol=0)
        assert (_chunk(out, 2) - _chunk(ref, 2)).abs().max() > 1e-3  # ...and it DOES reach a later chunk
        c4 = clean.clone()
        c4[:, :, :CF] = -c4[:, :, :CF]
        out = model(x_t, t, text, c4)
        assert (_chunk(out, 1) - _chunk(ref, 1)).abs().max() > 1e-3
        assert (_chunk(out, 2) - _chunk(ref, 2)).abs().max() > 1e-3


def test_chunk_t_affects_only_its_chunk():
    """Noisy chunks never attend to each other, so chunk j's t reaches chunk j's output only."""
    model = _student()
    x_t, t, text, clean = _inputs()
    with torch.no_grad():
        ref = model(x_t, t, text, clean)
        for j in range(FRAMES // CF):
            t2 = t.clone()
            t2[:, j] = 1 - t2[:, j]
            out = model(x_t, t2, text, clean)
            for k in range(FRAMES // CF):
                diff = (_chunk(out, k) - _chunk(ref, k)).abs().max()
                assert diff > 1e-3 if k == j else diff < 1e-6


def test_training_forward_matches_rollout_predictions():
    """Teacher forcing on the rollout's own states reproduces every velocity the cached rollout used."""
    model = _student(dtype=torch.float64)
    text = _inputs(dtype=torch.float64)[2]
    traj = _rollout(model, text, return_trajectory=True)
    assert isinstance(traj, StudentTrajectory)
    assert traj.sigmas == rollout_sigmas(STEPS, SHIFT)
    assert traj.x_t.shape == traj.v.shape == (len(STEPS), 2, 3, FRAMES, 16, 16)
    torch.testing.assert_close(traj.x0, _rollout(model, text))
    with torch.no_grad():
        for s, sigma in enumerate(traj.sigmas):
            t = torch.full((2, FRAMES // CF), sigma, dtype=torch.float64)
            torch.testing.assert_close(model(traj.x_t[s], t, text, traj.x0), traj.v[s], atol=1e-10, rtol=0)
    # the first step of every chunk starts from noise; the last step's x0 (clamped) is the output
    last = (traj.x_t[-1] - traj.sigmas[-1] * traj.v[-1]).clamp(-1, 1)
    torch.testing.assert_close(last, traj.x0)


def test_text_changes_the_output():
    model = _student()
    x_t, t, text, clean = _inputs()
    with torch.no_grad():
        a = model(x_t, t, text, clean)
        b = model(x_t, t, text.flip(0), clean)
    assert (a - b).abs().max() > 1e-3


def _fm_loss(model: TinyCausalStudent, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, text: torch.Tensor):
    tt = t.repeat_interleave(CF, dim=1)[:, None, :, None, None]
    x_t = (1 - tt) * x0 + tt * eps
    return (model(x_t, t, text, x0) - (eps - x0)).pow(2).mean()


def test_flow_matching_steps_lower_the_loss_and_learn_text():
    """From the adaLN-Zero init, Adam on one clip learns, and the prompt starts to matter."""
    model = _student(randomize=False).train()
    _, t, text, x0 = _inputs()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = _fm_loss(model, x0, eps, t, text)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0] and losses[-1] < min(losses[:10])
    with torch.no_grad():
        a = model(x0, t, text, x0)
        b = model(x0, t, torch.randn_like(text), x0)
    assert (a - b).abs().max() > 1e-4


def test_long_rollout_extends_the_short_one():
    """Generation is causal: a 2x-length rollout starts with exactly the normal-length clip."""
    model = _student()
    text = _inputs()[2]
    short = _rollout(model, text, num_frames=FRAMES)
    long = _rollout(model, text, num_frames=2 * FRAMES)
    assert long.shape == (2, 3, 2 * FRAMES, 16, 16) and torch.isfinite(long).all()
    torch.testing.assert_close(long[:, :, :FRAMES], short, atol=1e-6, rtol=0)
    assert long[:, :, FRAMES:].std() > 0.1


def test_rejects_bad_shapes():
    model = _student()
    x_t, t, text, clean = _inputs()
    text_only = text
    with pytest.raises(ValueError):
        _rollout(model, text_only, num_frames=FRAMES + 1)
    with pytest.raises(ValueError):
        _rollout(model, text_only, num_frames=2 * SMALL["max_frames"])
    with pytest.raises(ValueError):
        model(x_t, t[:, :2], text, clean)
    with pytest.raises(ValueError):
        model(x_t[:, :, :5], t, text, clean[:, :, :5])


def _words(b: int = 2, n: int = 5, pad: int = 3, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`(b, n + pad, 8)` word tokens: `n` words, then zero padding (as `text.kind=words` gives them)."""
    words = torch.randn(b, n, 8, generator=torch.Generator().manual_seed(7), dtype=dtype)
    return torch.cat([words, words.new_zeros(b, pad, 8)], dim=1)


def test_cross_attention_student_caches_and_reads_each_word():
    model = _student(dtype=torch.float64, cross_attention=True)
    text = _words(dtype=torch.float64)
    cached = _rollout(model, text, use_cache=True)
    torch.testing.assert_close(cached, _rollout(model, text, use_cache=False), atol=1e-10, rtol=0)
    assert cached.std() > 0.1
    x_t, t, _, clean = _inputs(dtype=torch.float64)
    with torch.no_grad():
        ref = model(x_t, t, text, clean)
        padded = model(x_t, t, torch.cat([text, text.new_zeros(2, 4, 8)], dim=1), clean)  # more padding: no change
        swapped = text.clone()
        swapped[:, 2] = torch.randn(2, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        one_word = model(x_t, t, swapped, clean)  # one word changed: the output changes
    torch.testing.assert_close(padded, ref, atol=1e-10, rtol=0)
    assert (one_word - ref).abs().max() > 1e-3


def test_cross_attention_student_refuses_one_vector_a_prompt_and_round_trips(tmp_path: Path):
    model = _student(cross_attention=True)
    with pytest.raises(ValueError, match="prompt's words"):
        model(*_inputs()[:2], _inputs()[2], _inputs()[3])
    loaded, _ = load_module(save_module(tmp_path / "w.safetensors", model), TinyCausalStudent.from_config)
    assert loaded.config["cross_attention"] is True
    torch.testing.assert_close(_rollout(loaded.eval(), _words()), _rollout(model, _words()), atol=1e-5, rtol=0)
    # a student without cross-attention reads word tokens as their mean (the tiny D does the same)
    plain = _student()
    mean = _words()[:, :5].mean(1)
    torch.testing.assert_close(_rollout(plain, _words()), _rollout(plain, mean), atol=1e-5, rtol=0)


def test_text_to_tokens_student_caches_reads_the_prompt_without_adaln_and_round_trips(tmp_path: Path):
    model = _student(dtype=torch.float64, text_to_tokens=True)
    text = _inputs(dtype=torch.float64)[2]
    cached = _rollout(model, text, use_cache=True)
    torch.testing.assert_close(cached, _rollout(model, text, use_cache=False), atol=1e-10, rtol=0)
    # cut adaLN's prompt path: the token path alone still carries the prompt to the output (and without it, nothing)
    x_t, t, _, clean = _inputs(dtype=torch.float64)
    for student, moves in ((model, True), (_student(dtype=torch.float64), False)):
        with torch.no_grad():
            student.text_embed[2].weight.zero_()
            student.text_embed[2].bias.zero_()
            change = (student(x_t, t, text, clean) - student(x_t, t, text.flip(0), clean)).abs().max()
        assert change > 1e-3 if moves else change < 1e-12
    loaded, _ = load_module(save_module(tmp_path / "w.safetensors", model), TinyCausalStudent.from_config)
    assert loaded.config["text_to_tokens"] is True
    torch.testing.assert_close(_rollout(loaded.double().eval(), text), _rollout(model, text), atol=1e-6, rtol=0)
    # a checkpoint saved before the option existed (no key in its config) rebuilds without the token path
    old = {k: v for k, v in _student().config.items() if k != "text_to_tokens"}
    assert TinyCausalStudent.from_config(old).text_tokens is None
