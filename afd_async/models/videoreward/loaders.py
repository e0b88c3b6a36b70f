"""Checkpoints of the VideoReward discriminator: VideoReward's own, and ours (`discriminator.pt`).

- **VideoReward** (`KwaiVGI/VideoReward`): a folder `checkpoint-<step>/` with
  `adapter_model.safetensors` (peft LoRA, keys `base_model.model.<module>.lora_A.weight`)
  and `non_lora_state_dict.pth` (the other trained tensors: `rm_head.weight`, and
  any tuned embeddings), named for the transformers-4 Qwen2-VL layout
  (`model.layers.…`, `visual.…`); renamed here to the current layout
  (`model.language_model.layers.…`, `model.visual.…`).
- **AFD** (`discriminator.pt`): `{"format", "config", "lora", "rm_head"}`, written
  by `save_afd_discriminator` after D's training; LoRA keys as in our module.

Both loads are strict: every tensor in the file must land on a parameter of the
same shape, and every LoRA / head parameter of the model must be given.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from torch import Tensor, nn

from afd_async.checkpoint import CheckpointError

__all__ = ["load_videoreward_checkpoint", "save_afd_discriminator", "load_afd_discriminator", "AFD_FORMAT"]

AFD_FORMAT = "afd-videoreward-v1"


def _current_name(key: str) -> str:
    """VideoAlign/peft key -> our module's key (`backbone.…` or `rm_head.…`)."""
    key = key.replace("base_model.model.", "", 1) if key.startswith("base_model.model.") else key
    if key.startswith("rm_head."):
        return key
    key = re.sub(r"^model\.(?!language_model\.|visual\.)", "model.language_model.", key)
    key = re.sub(r"^visual\.", "model.visual.", key)
    key = re.sub(r"\.lora_([AB])\.weight$", r".lora_\1.default.weight", key)
    return "backbone." + key


def _load_strict(d: nn.Module, tensors: Mapping[str, Tensor], *, source: str) -> None:
    own = nn.Module.state_dict(d)  # every tensor (VideoReward's own state_dict holds the trained ones only)
    for k, v in tensors.items():
        if k not in own:
            raise CheckpointError(f"{source}: unexpected key '{k}'")
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{source}: key '{k}' has shape {tuple(v.shape)}, model expects {tuple(own[k].shape)}")
    need = [k for k in own if ".lora_" in k or k.startswith("rm_head.")]
    missing = [k for k in need if k not in tensors]
    if missing:
        raise CheckpointError(f"{source}: missing key '{missing[0]}' ({len(missing)} missing in all)")
    d.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False)


def load_videoreward_checkpoint(d: nn.Module, path: str | Path) -> int:
    """Load VideoReward's LoRA + head into `d` from `path` (a `checkpoint-<step>` folder or its parent: latest step).

    Returns:
        the checkpoint's step.
    """
    p = Path(path)
    steps = sorted(p.glob("checkpoint-*"), key=lambda q: int(q.name.split("-")[-1])) if p.is_dir() else []
    ckpt = steps[-1] if steps else p
    lora_f, rest_f = ckpt / "adapter_model.safetensors", ckpt / "non_lora_state_dict.pth"
    for f in (lora_f, rest_f):
        if not f.is_file():
            raise CheckpointError(f"VideoReward checkpoint {ckpt}: {f.name} not found")
    tensors = {_current_name(k): v for k, v in load_file(str(lora_f)).items()}
    rest = torch.load(str(rest_f), map_location="cpu", weights_only=True)
    tensors.update({_current_name(k): v for k, v in rest.items()})
    _load_strict(d, tensors, source=f"VideoReward checkpoint {ckpt}")
    return int(ckpt.name.split("-")[-1]) if ckpt.name.startswith("checkpoint-") else 0


def save_afd_discriminator(d: nn.Module, path: str | Path, *, meta: Mapping[str, Any] | None = None) -> Path:
    """Write D's trained tensors (LoRA, rm_head) and config to `discriminator.pt`."""
    sd = d.state_dict()
    out = {
        "format": AFD_FORMAT,
        "config": dict(getattr(d, "config", {})),
        "lora": {k: v.detach().cpu() for k, v in sd.items() if ".lora_" in k},
        "rm_head": {k[len("rm_head."):]: v.detach().cpu() for k, v in sd.items() if k.startswith("rm_head.")},
        "meta": dict(meta or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(out, tmp)
    tmp.replace(path)
    return path


def load_afd_discriminator(d: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a `discriminator.pt` written by `save_afd_discriminator`; returns its meta."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read discriminator checkpoint {path}: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != AFD_FORMAT:
        raise CheckpointError(f"{path}: not an AFD discriminator checkpoint (format {obj.get('format') if isinstance(obj, dict) else None!r}, expected {AFD_FORMAT!r})")
    want, got = getattr(d, "config", {}), obj.get("config", {})
    for k in ("lora_rank", "lora_alpha", "reward_tokens"):
        if k in want and k in got and want[k] != got[k]:
            raise CheckpointError(f"{path}: trained with {k}={got[k]}, model has {k}={want[k]}")
    tensors = dict(obj["lora"])
    tensors.update({f"rm_head.{k}": v for k, v in obj["rm_head"].items()})
    _load_strict(d, tensors, source=f"discriminator checkpoint {path}")
    return dict(obj.get("meta", {}))


def tiny_tokenizer(words: list[str], special: Mapping[str, int]) -> Any:
    """A word-level tokenizer with Qwen2-VL's chat/vision special tokens at given ids (tests, benchmarks: no download)."""
    # deferred: transformers (seconds)
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1}
    for w in words:
        vocab.setdefault(w, len(vocab))
    vocab.update(special)
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.add_special_tokens({"additional_special_tokens": list(special)})
    return fast
