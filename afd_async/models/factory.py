"""`make_*` factories: config dataclasses in, models out (entry points call these, not constructors)."""

from __future__ import annotations

from typing import Any

from torch import nn

from afd_async.checkpoint import CheckpointError, load_module, resolve_checkpoint
from afd_async.config.discriminator import DiscriminatorConfig
from afd_async.config.student import StudentConfig
from afd_async.config.root import TextConfig
from afd_async.models.text_encoder import CachedTextEncoder


def make_text_encoder(cfg: TextConfig, device: str = "cpu") -> CachedTextEncoder:
    return CachedTextEncoder(cfg.kind, cache_dir=cfg.cache_dir, device=device)


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
    )


def make_student(cfg: StudentConfig, text_dim: int) -> nn.Module:
    """The student; from `cfg.checkpoint` if set (its saved architecture must match the config)."""
    from afd_async.models.tiny_student import TinyCausalStudent

    if cfg.checkpoint is None:
        return TinyCausalStudent(**student_kwargs(cfg, text_dim))
    path = resolve_checkpoint(cfg.checkpoint)
    model, _meta = load_module(path, TinyCausalStudent.from_config)
    want = student_kwargs(cfg, text_dim)
    got = {k: model.config.get(k) for k in want}
    diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    if diff:
        k, (g, w) = next(iter(diff.items()))
        raise CheckpointError(f"student checkpoint {path} was trained with {k}={g}, config asks for {k}={w}")
    return model


def make_discriminator(cfg: DiscriminatorConfig, text_dim: int) -> nn.Module:
    from afd_async.models.tiny_discriminator import TinyVideoDiscriminator

    if cfg.checkpoint is not None:
        model, _ = load_module(resolve_checkpoint(cfg.checkpoint), TinyVideoDiscriminator.from_config)
        return model
    return TinyVideoDiscriminator(text_dim=text_dim, channels=cfg.channels, depth=cfg.depth)
