"""`make_*` factories: config dataclasses in, models out (entry points call these, not constructors)."""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from torch import nn

from afd_async.checkpoint import CheckpointError, load_module, resolve_checkpoint
from afd_async.config.discriminator import DiscriminatorConfig
from afd_async.config.student import StudentConfig
from afd_async.config.root import TextConfig
from afd_async.models.policies import CopyPolicies
from afd_async.models.text_encoder import CachedTextEncoder
from afd_async.models.tiny_discriminator import TinyVideoDiscriminator
from afd_async.models.tiny_student import TinyCausalStudent
from afd_async.models.videoreward.loaders import load_afd_discriminator, load_videoreward_checkpoint
from afd_async.models.videoreward.model import VideoRewardDiscriminator
from afd_async.models.wan.config import ARCHS, latent_frames
from afd_async.models.wan.loaders import WanVAE, load_generator_into, load_wan_vae
from afd_async.models.wan.lora import LoraPolicies

log = logging.getLogger(__name__)


def make_text_encoder(cfg: TextConfig, student: Optional[StudentConfig] = None, device: str = "cpu") -> CachedTextEncoder:
    """The student's text conditioning: `cfg.kind` (MiniLM / hash) for the tiny student, UMT5 for a Wan student.

    Either way embeddings are cached per prompt in `cfg.cache_dir`, so the encoder loads only on a miss.
    """
    if student is not None and student.kind == "wan":
        w = student.wan
        if w.text_encoder is None:
            raise CheckpointError("student.wan.text_encoder is required: a UMT5-XXL folder or Wan's "
                                  "models_t5_umt5-xxl-enc-bf16.pth (weights cannot be downloaded by the library)")
        return CachedTextEncoder("umt5", cache_dir=cfg.cache_dir, device=device, umt5_path=w.text_encoder,
                                 tokenizer=w.tokenizer, text_len=w.text_len)
    return CachedTextEncoder(cfg.kind, cache_dir=cfg.cache_dir, device=device, text_len=cfg.max_words)


def student_kwargs(cfg: StudentConfig, text_dim: int) -> dict[str, Any]:
    return dict(
        channels=3,
        height=cfg.height,
        width=cfg.width,
        chunk_frames=cfg.chunk_frames,
        patch_size=cfg.patch_size,
        dim=cfg.dim,
        depth=cfg.depth,
        heads=cfg.heads,
        mlp_ratio=cfg.mlp_ratio,
        text_dim=text_dim,
        cross_attention=cfg.cross_attention,
        text_to_tokens=cfg.text_to_tokens,
    )


def make_student(cfg: StudentConfig, text_dim: int, device: str | torch.device = "cpu", *,
                 text_kind: Optional[str] = None) -> nn.Module:
    """The student on `device`; from `cfg.checkpoint` if set (its saved architecture must match the config, and
    the prompts' encoder `text_kind` the one it was pretrained on, where its meta records it: a student fed
    another encoder's vectors of the same size would run and draw nothing its prompts say).

    The tiny student is built on CPU and then moved, so its initial weights (global RNG draws) are
    the same on every device; the Wan student is built on `device` directly (1.3B parameters).
    """
    if cfg.kind == "wan":
        return make_wan_student(cfg, str(device))

    if cfg.checkpoint is None:
        return TinyCausalStudent(**student_kwargs(cfg, text_dim)).to(device)
    path = resolve_checkpoint(cfg.checkpoint)
    model, meta = load_module(path, TinyCausalStudent.from_config)
    trained_on = (meta.get("pretrain") or {}).get("text_kind")
    if text_kind is not None and trained_on is not None and trained_on != text_kind:
        raise CheckpointError(f"student checkpoint {path} was pretrained on text.kind={trained_on} prompt vectors, "
                              f"config asks for text.kind={text_kind}: set text.kind={trained_on} or pretrain anew")
    want = student_kwargs(cfg, text_dim)
    got = {k: model.config.get(k) for k in want}
    diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    if diff:
        k, (g, w) = next(iter(diff.items()))
        raise CheckpointError(f"student checkpoint {path} was trained with {k}={g}, config asks for {k}={w}")
    return model.to(device)


def make_student_policies(cfg: StudentConfig, student: nn.Module, *, eval_ema: float = 0.99) -> Any:
    """θ_old / θ_ref / eval EMA of `student` (`models/policies.py`): deep copies for the tiny student and
    Wan full finetune, LoRA adapters on one base for Wan (`cfg.wan.finetune: lora`)."""
    if cfg.kind == "wan" and cfg.wan.finetune == "lora":
        return LoraPolicies(student, rank=cfg.wan.lora_rank, alpha=cfg.wan.lora_alpha, eval_ema=eval_ema)
    return CopyPolicies(student, eval_ema=eval_ema)


def make_rollout_policy(cfg: StudentConfig, text_dim: int, device: str | torch.device = "cpu", *,
                        text_kind: Optional[str] = None) -> nn.Module:
    """What a student actor rolls out: a module whose `load_state_dict` takes the learner's published θ_old.

    Tiny (and Wan full finetune): the student itself. Wan LoRA: the `old` view of LoRA policies on the
    base, so the published weights are the `old` adapter's tensors only.
    """
    student = make_student(cfg, text_dim, device, text_kind=text_kind)
    if cfg.kind == "wan" and cfg.wan.finetune == "lora":
        return make_student_policies(cfg, student).old
    return student


def make_discriminator(cfg: DiscriminatorConfig, text_dim: int, device: str | torch.device = "cpu", *,
                       text_kind: Optional[str] = None) -> nn.Module:
    """The discriminator on `device` (the tiny D is built on CPU, then moved: same initial weights anywhere).

    A tiny D checkpoint must have the architecture the config asks for (channels, depth, head, prompt size) and,
    where its meta records it (`afd pretrain-d`), the prompts' encoder `text_kind`: a D that learnt to read one
    encoder's vectors would score another's as noise, and its prompt reading (the prompt-swap probe) with it.
    """
    if cfg.kind == "videoreward":
        return make_videoreward(cfg, str(device))

    want = dict(text_dim=text_dim, channels=cfg.channels, depth=cfg.depth, temporal_head=cfg.temporal_head)
    if cfg.checkpoint is None:
        return TinyVideoDiscriminator(**want).to(device)
    path = resolve_checkpoint(cfg.checkpoint)
    model, meta = load_module(path, TinyVideoDiscriminator.from_config)
    trained_on = (meta.get("pretrain_d") or {}).get("text_kind")
    if text_kind is not None and trained_on is not None and trained_on != text_kind:
        raise CheckpointError(f"discriminator checkpoint {path} was pretrained on text.kind={trained_on} prompt "
                              f"vectors, config asks for text.kind={text_kind}: set text.kind={trained_on} or "
                              "pretrain anew (afd pretrain-d)")
    got = {k: model.config.get(k, False if k == "temporal_head" else None) for k in want}
    diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    if diff:
        k, (g, w) = next(iter(diff.items()))
        asks = (f"text.kind gives {w}-dim prompt vectors" if k == "text_dim"
                else f"config asks for discriminator.{k}={w}")
        raise CheckpointError(f"discriminator checkpoint {path} was trained with {k}={g}, {asks} (discriminator."
                              "checkpoint=null trains a D of that shape from random weights)")
    return model.to(device)


# ---------------------------------------------------------------------- real scale

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def wan_student_kwargs(cfg: StudentConfig) -> dict[str, Any]:
    """`WanCausalStudent` kwargs for a `kind: wan` config (latent grid = pixels / 8)."""
    w = cfg.wan
    return dict(transformer=ARCHS[w.arch][0], latent_height=cfg.height // 8, latent_width=cfg.width // 8,
                chunk_frames=cfg.chunk_frames, max_frames=max(63, latent_frames(cfg.num_frames)),
                kv_cache_frames=w.kv_cache_frames, gradient_checkpointing=w.gradient_checkpointing, compile=w.compile)


def make_wan_vae(cfg: StudentConfig, device: str = "cpu") -> nn.Module:
    """The Wan VAE (`WanVAE`: latent normalisation included) from `cfg.wan.vae_checkpoint`; random weights without one."""
    # deferred: diffusers (seconds) loads only for a Wan student
    from diffusers import AutoencoderKLWan

    vae_kwargs = ARCHS[cfg.wan.arch][1]
    if cfg.wan.vae_checkpoint is not None:
        vae = load_wan_vae(cfg.wan.vae_checkpoint, config=vae_kwargs)
    else:
        log.warning("student.wan.vae_checkpoint is null: the Wan VAE has random weights (benchmarks only)")
        vae = AutoencoderKLWan(**vae_kwargs).eval()
    return WanVAE(vae.requires_grad_(False)).to(device, _DTYPES[cfg.wan.dtype])


def make_wan_student(cfg: StudentConfig, device: str = "cpu") -> nn.Module:
    """Causal Wan student (our safetensors `cfg.checkpoint`, or a Self-Forcing / Causal-Forcing generator)
    with its VAE attached for `decode`."""
    # deferred: imports diffusers (seconds); only a Wan student needs it
    from afd_async.models.wan.causal_student import WanCausalStudent

    kwargs = wan_student_kwargs(cfg)
    if cfg.checkpoint is not None:
        model, _ = load_module(resolve_checkpoint(cfg.checkpoint), WanCausalStudent.from_config)
    else:
        with torch.device(device):
            model = WanCausalStudent(**kwargs)
        if cfg.wan.generator_checkpoint is not None:
            load_generator_into(model, cfg.wan.generator_checkpoint, fmt=cfg.wan.checkpoint_format, use_ema=cfg.wan.use_ema)
    model = model.to(device, _DTYPES[cfg.wan.dtype])
    model.attach_vae(make_wan_vae(cfg, device))
    return model


def make_videoreward(cfg: DiscriminatorConfig, device: str = "cpu", *, fps: float = 16.0) -> nn.Module:
    """VideoReward discriminator from a Qwen2-VL-2B folder, optionally VideoReward's weights, optionally our `discriminator.pt`."""
    vr = cfg.videoreward
    if vr.backbone_path is None:
        raise CheckpointError("discriminator.videoreward.backbone_path is required: a Qwen2-VL-2B-Instruct folder "
                              "(weights cannot be downloaded by the library)")
    # deferred: transformers (seconds) loads only for a VideoReward D
    from transformers import AutoTokenizer

    d = VideoRewardDiscriminator(
        tokenizer=AutoTokenizer.from_pretrained(vr.backbone_path), backbone_path=vr.backbone_path,
        lora_rank=vr.lora_rank, lora_alpha=vr.lora_alpha, fps=fps, sample_fps=vr.sample_fps, max_pixels=vr.max_pixels,
        gradient_checkpointing=vr.gradient_checkpointing, dtype=_DTYPES[vr.dtype],
    )
    if vr.init_from is not None:
        load_videoreward_checkpoint(d, vr.init_from)
    if cfg.checkpoint is not None:
        load_afd_discriminator(d, cfg.checkpoint)
    return d.to(device)