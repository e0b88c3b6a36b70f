"""Loaders at tiny configs: each test writes a random checkpoint in the original layout and loads it back."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from afd_async.checkpoint import CheckpointError, load_module, save_module  # noqa: E402
from afd_async.models.wan.causal_student import WanCausalStudent  # noqa: E402
from afd_async.models.wan.config import TINY_WAN  # noqa: E402
from afd_async.models.wan.loaders import load_generator_into, load_umt5, load_wan_vae  # noqa: E402

# diffusers name fragment -> Wan original name fragment (the inverse of the conversion; facts about the layouts)
_TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    (".attn1.to_out.0.", ".self_attn.o."), (".attn2.to_out.0.", ".cross_attn.o."),
    (".attn1.to_", ".self_attn."), (".attn2.to_", ".cross_attn."),
    (".attn1.norm_", ".self_attn.norm_"), (".attn2.norm_", ".cross_attn.norm_"),
    (".norm2.", ".norm3."), (".ffn.net.0.proj.", ".ffn.0."), (".ffn.net.2.", ".ffn.2."),
]


def _to_original(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for a, b in _TO_ORIGINAL:
            k = k.replace(a, b)
        k = {"proj_out.weight": "head.head.weight", "proj_out.bias": "head.head.bias",
             "scale_shift_table": "head.modulation"}.get(k, k)
        k = k.replace(".scale_shift_table", ".modulation")
        out[k] = v
    return out


def _student() -> WanCausalStudent:
    return WanCausalStudent(transformer=TINY_WAN, latent_height=4, latent_width=6, chunk_frames=2, max_frames=8)


@pytest.mark.parametrize("fmt,use_ema", [("self_forcing", False), ("self_forcing", True), ("causal_forcing", False)])
def test_generator_checkpoint_loads(tmp_path, fmt, use_ema) -> None:
    src = _student()
    orig = _to_original(src.transformer.state_dict())
    assert "blocks.0.self_attn.q.weight" in orig and "head.head.weight" in orig
    wrapped = {f"model.{k}": v for k, v in orig.items()}
    ema = {f"model._fsdp_wrapped_module.{k}": v * 2 for k, v in orig.items()}
    path = tmp_path / "gen.pt"
    torch.save({"generator": wrapped, "generator_ema": ema} if fmt == "self_forcing" else {"generator": wrapped}, path)
    dst = _student()
    load_generator_into(dst, path, fmt=fmt, use_ema=use_ema)
    k = "blocks.1.attn2.to_k.weight"
    torch.testing.assert_close(dst.transformer.state_dict()[k], src.transformer.state_dict()[k] * (2 if use_ema else 1))


def test_generator_mismatch_names_the_key(tmp_path) -> None:
    orig = _to_original(_student().transformer.state_dict())
    bad = dict(orig)
    del bad["blocks.1.ffn.2.weight"]
    torch.save({"generator": {f"model.{k}": v for k, v in bad.items()}}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="missing key 'blocks.1.ffn.net.2.weight'"):
        load_generator_into(_student(), tmp_path / "a.pt")
    bad = dict(orig, **{"blocks.0.self_attn.q.weight": torch.zeros(3, 3)})
    torch.save({"generator": {f"model.{k}": v for k, v in bad.items()}}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="blocks.0.attn1.to_q.weight' has shape"):
        load_generator_into(_student(), tmp_path / "b.pt")
    torch.save({"generator": {f"model.{k}": v for k, v in orig.items()}}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="no 'generator_ema'"):
        load_generator_into(_student(), tmp_path / "c.pt", use_ema=True)


def test_own_safetensors_round_trip(tmp_path) -> None:
    m = _student()
    save_module(tmp_path / "s.safetensors", m)
    m2, _ = load_module(tmp_path / "s.safetensors", WanCausalStudent.from_config)
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def _vae_original_names() -> list[str]:
    """Every key name of Wan's original VAE (for its fixed block structure), as candidates."""
    res = [f"residual.{i}.{p}" for i, p in ((0, "gamma"), (2, "weight"), (2, "bias"), (3, "gamma"), (6, "weight"), (6, "bias"))]
    per_block = res + ["shortcut.weight", "shortcut.bias", "resample.1.weight", "resample.1.bias",
                       "time_conv.weight", "time_conv.bias"]
    names = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]
    for side, blocks in (("encoder", "downsamples"), ("decoder", "upsamples")):
        names += [f"{side}.conv1.weight", f"{side}.conv1.bias", f"{side}.head.0.gamma", f"{side}.head.2.weight",
                  f"{side}.head.2.bias"]
        names += [f"{side}.middle.{i}.{r}" for i in (0, 2) for r in res]
        names += [f"{side}.middle.1.{r}" for r in ("norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias")]
        names += [f"{side}.{blocks}.{i}.{r}" for i in range(16) for r in per_block]
    return names


def test_wan_vae_original_layout(tmp_path) -> None:
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    cfg = dict(base_dim=8, z_dim=4, latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    src = AutoencoderKLWan(**cfg).state_dict()
    names = _vae_original_names()
    mapped = convert_wan_vae_to_diffusers({n: torch.tensor(float(i)) for i, n in enumerate(names)})
    inverse = {k: names[int(v)] for k, v in mapped.items() if k in src}
    assert set(inverse) == set(src), sorted(set(src) - set(inverse))[:3]
    torch.save({inverse[k]: v.clone().normal_() for k, v in src.items()}, tmp_path / "Wan2.1_VAE.pth")
    vae = load_wan_vae(tmp_path / "Wan2.1_VAE.pth", config=cfg)
    orig = torch.load(tmp_path / "Wan2.1_VAE.pth")
    torch.testing.assert_close(vae.state_dict()["decoder.conv_in.weight"], orig["decoder.conv1.weight"])
    del orig["encoder.head.2.weight"]
    torch.save(orig, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="missing key 'encoder.conv_out.weight'"):
        load_wan_vae(tmp_path / "bad.pth", config=cfg)


def test_umt5_original_and_hf_layouts(tmp_path) -> None:
    from transformers import UMT5Config, UMT5EncoderModel

    from afd_async.models.wan.loaders import T5_ORIGINAL_TO_HF  # noqa: F401 (the table under test)

    cfg = dict(vocab_size=32, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
               relative_attention_num_buckets=8)
    hf = UMT5EncoderModel(UMT5Config(**cfg)).eval()
    inv = {"shared.weight": "token_embedding.weight", "encoder.final_layer_norm.weight": "norm.weight"}
    orig = {}
    for k, v in hf.state_dict().items():
        if k == "encoder.embed_tokens.weight":
            continue
        o = inv.get(k) or (k.replace("encoder.block.", "blocks.").replace("layer.0.SelfAttention.relative_attention_bias",
                           "pos_embedding.embedding").replace("layer.0.SelfAttention.", "attn.")
                           .replace("layer.0.layer_norm", "norm1").replace("layer.1.layer_norm", "norm2")
                           .replace("layer.1.DenseReluDense.wi_0", "ffn.gate.0").replace("layer.1.DenseReluDense.wi_1", "ffn.fc1")
                           .replace("layer.1.DenseReluDense.wo", "ffn.fc2"))
        orig[o] = v
    torch.save(orig, tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    m = load_umt5(tmp_path / "models_t5_umt5-xxl-enc-bf16.pth", config=cfg)
    ids = torch.randint(0, 32, (1, 7))
    torch.testing.assert_close(m(input_ids=ids).last_hidden_state, hf(input_ids=ids).last_hidden_state)
    hf.save_pretrained(tmp_path / "umt5")
    m2 = load_umt5(tmp_path / "umt5")
    torch.testing.assert_close(m2(input_ids=ids).last_hidden_state, hf(input_ids=ids).last_hidden_state)
    orig["blocks.0.attn.extra.weight"] = torch.zeros(1)
    torch.save(orig, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="unexpected key 'blocks.0.attn.extra.weight'"):
        load_umt5(tmp_path / "bad.pth", config=cfg)
