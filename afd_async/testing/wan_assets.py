"""Random-weight files for the Wan experiments, in the formats a user points the config at.

Why: the real-scale path (`experiment=wan_tiny` on CPU, `experiment=wan_1_3b` on a GPU) must run where
no weights can be downloaded. One writer serves the CPU tests and the GPU run, so both load the same
formats through the same code: our safetensors for the causal student, a diffusers-layout safetensors
for the Wan VAE, transformers folders with tokenizers for UMT5 and Qwen2-VL.

Sizes:
    tiny: what `experiment=wan_tiny` reads (a few MB, default inits, seed 0).
    real: the Wan2.1-T2V-1.3B causal student (bf16, ~2.8 GB), Wan2.1's VAE (diffusers' AutoencoderKLWan
        defaults), Qwen2-VL-2B (bf16, ~4.4 GB, word-level tokenizer with Qwen's real special-token ids)
        and a UMT5 encoder with UMT5-XXL's width (d_model 4096, the student's text_dim) but
        `UMT5_REAL_LAYERS` layers. Depth does not change the training loop's speed: text features are
        computed once per prompt and cached on disk (`text.cache_dir`), so a random 11 GB UMT5-XXL would
        only cost disk and start-up time.

Real-size models are built on the meta device and given normal(0, 0.02) weights where `device` says
(a GPU draws the ~4 B values in seconds), so no default initialiser runs over billions of parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

__all__ = ["write_wan_assets", "UMT5_REAL_LAYERS"]

Size = Literal["tiny", "real"]

UMT5_TINY = dict(d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
                 relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=1, eos_token_id=2)
UMT5_REAL_LAYERS = 2
UMT5_REAL = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=UMT5_REAL_LAYERS, num_heads=64,
                 feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, decoder_start_token_id=0,
                 pad_token_id=1, eos_token_id=2)
"""UMT5-XXL's layer shapes (Wan's text encoder) at `UMT5_REAL_LAYERS` layers instead of 24."""

QWEN_SPECIAL_TINY = {"<|im_start|>": 240, "<|im_end|>": 241, "<|vision_start|>": 242, "<|vision_end|>": 243,
                     "<|video_pad|>": 244, "<|image_pad|>": 245, "<|VQ_reward|>": 246, "<|MQ_reward|>": 247,
                     "<|TA_reward|>": 248}
QWEN_SPECIAL_REAL = {"<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
                     "<|vision_end|>": 151653, "<|image_pad|>": 151655, "<|video_pad|>": 151656,
                     "<|VQ_reward|>": 151665, "<|MQ_reward|>": 151666, "<|TA_reward|>": 151667}
"""Qwen2-VL-2B-Instruct's ids of the chat/vision tokens and VideoReward's reward tokens."""
QWEN_TINY = dict(
    text_config=dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},
                     bos_token_id=None, eos_token_id=None, pad_token_id=1),
    vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                       spatial_merge_size=2, temporal_patch_size=2),
    video_token_id=244, image_token_id=245, vision_start_token_id=242, vision_end_token_id=243,
)
_EXPERIMENT = {"tiny": "wan_tiny", "real": "wan_1_3b"}


def random_init_(module: nn.Module, *, std: float = 0.02) -> nn.Module:
    """Give every parameter a random value in place: norm scales 1, biases 0, the rest normal(0, std)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif p.ndim == 1 and name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, std)
    return module


def _materialize(module: nn.Module, device: str, dtype: torch.dtype) -> nn.Module:
    """A meta-device module's storage on `device` in `dtype`, randomly initialised.

    `to_empty` gives tied parameters (a transformers model's embedding and LM head) storage of their own;
    they are tied again before the draw, so the saved files agree with their configs.
    """
    module = module.to(dtype).to_empty(device=device)
    if hasattr(module, "tie_weights"):
        module.tie_weights()
    return random_init_(module)


def _prompt_words() -> list[str]:
    from afd_async.physics import load_prompt_suite

    return sorted({w for s in ("train", "eval") for p in load_prompt_suite(s) for w in p.prompt.lower().split()})


def _write_student(path: Path, size: Size, overrides: list[str], device: str) -> None:
    from afd_async.checkpoint import save_module
    from afd_async.config import load_config
    from afd_async.models.factory import wan_student_kwargs
    from afd_async.models.wan.causal_student import WanCausalStudent

    # the saved constructor config (compile, gradient checkpointing, latent grid) is the run's
    kwargs = wan_student_kwargs(load_config([f"experiment={_EXPERIMENT[size]}", *overrides]).student)
    if size == "tiny":
        save_module(path, WanCausalStudent(**kwargs))
        return
    with torch.device("meta"):
        student = WanCausalStudent(**kwargs)
    save_module(path, _materialize(student, device, torch.bfloat16))  # bf16: the loader casts to student.wan.dtype


def _write_vae(path: Path, size: Size) -> None:
    from diffusers import AutoencoderKLWan
    from safetensors.torch import save_file

    from afd_async.models.wan.config import ARCHS

    arch = "tiny" if size == "tiny" else "t2v-1.3b"
    save_file(AutoencoderKLWan(**ARCHS[arch][1]).state_dict(), str(path))  # 127 M parameters at most: default init


def _write_umt5(folder: Path, size: Size, words: list[str], device: str) -> None:
    from transformers import UMT5Config, UMT5EncoderModel

    from afd_async.models.videoreward.loaders import tiny_tokenizer

    config = UMT5Config(vocab_size=len(words) + 3, **(UMT5_TINY if size == "tiny" else UMT5_REAL))
    if size == "tiny":
        model = UMT5EncoderModel(config)
    else:
        with torch.device("meta"):
            model = UMT5EncoderModel(config)
        model = _materialize(model, device, torch.bfloat16)
    model.save_pretrained(folder)
    tiny_tokenizer(words, {"</s>": 2}).save_pretrained(folder)


def _write_qwen(folder: Path, size: Size, words: list[str], device: str) -> None:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from afd_async.models.videoreward.loaders import tiny_tokenizer
    from afd_async.models.videoreward.model import QWEN2_VL_2B

    if size == "tiny":
        Qwen2VLForConditionalGeneration(Qwen2VLConfig(**QWEN_TINY)).save_pretrained(folder)
        tiny_tokenizer(words, QWEN_SPECIAL_TINY).save_pretrained(folder)
        return
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**QWEN2_VL_2B))
    model = _materialize(model, device, torch.bfloat16)
    model.save_pretrained(folder)
    tiny_tokenizer(words, QWEN_SPECIAL_REAL).save_pretrained(folder)


def write_wan_assets(root: str | Path, size: Size = "tiny", *, overrides: list[str] | None = None,
                     device: str = "cpu") -> list[str]:
    """Write every weight file of `experiment=wan_tiny` (`size="tiny"`) or `experiment=wan_1_3b` (`"real"`).

    Args:
        root: folder to write into (created): `student.safetensors`, `vae.safetensors`, `umt5/`, `qwen2vl/`.
        size: `tiny` (CPU tests) or `real` (the 1.3B run; ~7.5 GB on disk).
        overrides: the run's student overrides (e.g. `student.wan.compile=false`): the student file saves its
            constructor config, which the loader rebuilds from.
        device: where the real-size random values are drawn (`cuda` is fastest); tiny files ignore it.

    Returns:
        the Hydra overrides that name the files.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    words = _prompt_words()
    if size == "tiny":
        words = words[:200]  # the tiny vocabularies (UMT5 and Qwen ids < 240)
    _write_student(root / "student.safetensors", size, list(overrides or []), device)
    _write_vae(root / "vae.safetensors", size)
    _write_umt5(root / "umt5", size, words, device)
    _write_qwen(root / "qwen2vl", size, words, device)
    return [f"student.checkpoint={root / 'student.safetensors'}", f"student.wan.vae_checkpoint={root / 'vae.safetensors'}",
            f"student.wan.text_encoder={root / 'umt5'}", f"discriminator.videoreward.backbone_path={root / 'qwen2vl'}"]
