"""Module checkpoints as safetensors with the constructor config in the metadata.

diffusers-style: a model's constructor kwargs (`module.config`) are saved next
to its tensors, so a checkpoint rebuilds its own model. Loading checks every
key and shape and names the first mismatch, rather than failing deep inside
`load_state_dict` or, worse, loading half a model.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, TypeVar

import torch
from safetensors import safe_open
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

M = TypeVar("M", bound=nn.Module)
ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED = {"pretrained": ASSETS / "tiny_student_pretrained.safetensors",  # afd pretrain (the base student)
           "pretrained_d": ASSETS / "tiny_discriminator_pretrained.safetensors"}  # afd pretrain-d


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


def resolve_checkpoint(path: str) -> Path:
    """Map the shipped alias (`pretrained`) or a user path to an existing file."""
    p = SHIPPED.get(path, Path(path).expanduser())
    if not p.is_file():
        command = "afd pretrain-d" if path == "pretrained_d" else "afd pretrain"
        hint = f" (create it with `{command}`)" if path in SHIPPED else ""
        raise CheckpointError(f"checkpoint not found: {p}{hint}")
    return p


def save_module(path: str | Path, module: nn.Module, *, meta: Optional[Mapping[str, Any]] = None) -> Path:
    """Atomically write `module`'s tensors and `module.config` (+ `meta`) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    metadata = {"config": json.dumps(getattr(module, "config", {})), "class": type(module).__name__}
    metadata["meta"] = json.dumps(dict(meta or {}))
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Returns (tensors, constructor config, meta)."""
    path = Path(path)
    try:
        tensors = load_file(str(path))

        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
        config = json.loads(md.get("config", "{}"))
        meta = json.loads(md.get("meta", "{}"))
    except (SafetensorError, OSError, json.JSONDecodeError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    return tensors, config, meta


def load_into(module: nn.Module, tensors: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Strictly load `tensors` into `module`: same keys, same shapes, finite values."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing:
        raise CheckpointError(f"{source}: missing key '{missing[0]}' ({len(missing)} missing in all)")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key '{unexpected[0]}' ({len(unexpected)} unexpected in all)")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{source}: key '{k}' has shape {tuple(v.shape)}, model expects {tuple(own[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: key '{k}' contains NaN or Inf")
    module.load_state_dict(tensors, strict=True)


def load_module(path: str | Path, build: Callable[[dict[str, Any]], M]) -> tuple[M, dict[str, Any]]:
    """Rebuild a module from its saved config with `build(config)` and load its tensors."""
    tensors, config, meta = read_checkpoint(path)
    module = build(config)
    load_into(module, tensors, source=str(path))
    return module, meta


def num_params(module: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in module.parameters())
