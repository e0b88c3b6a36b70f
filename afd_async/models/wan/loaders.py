"""Loading real checkpoints into the causal Wan student, the Wan VAE and the UMT5 text encoder.

Formats read (weights cannot be downloaded here; tests write tiny random
checkpoints in each layout):

- **Self-Forcing / Causal-Forcing generator** (`.pt`): a dict with `generator`
  and/or `generator_ema`, each a state dict of their `WanDiffusionWrapper`,
  i.e. `model.` + Wan's *original* key names (`blocks.0.self_attn.q.weight`,
  `patch_embedding.weight`, `text_embedding.0.weight`, `time_embedding.0.weight`,
  `time_projection.1.weight`, `head.head.weight`, `head.modulation`, …), possibly
  with FSDP / activation-checkpoint / compile wrapper segments in the names.
  A bare original Wan state dict (`.pt`/`.pth`/`.safetensors`) is accepted too.
- **Wan VAE** (`Wan2.1_VAE.pth`): Wan's original VAE layout.
- **UMT5-XXL**: a transformers `UMT5EncoderModel` folder, or Wan's original
  `models_t5_umt5-xxl-enc-bf16.pth` (converted by `T5_ORIGINAL_TO_HF`).
- **our own**: safetensors with the constructor config (`afd_async.checkpoint`).

Original → diffusers renames use diffusers' own converters (the same tables
`from_single_file` uses); every load is then strict, naming the first missing,
unexpected or mis-shaped key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from afd_async.checkpoint import CheckpointError, load_into

__all__ = [
    "read_state_dict", "strip_wrappers", "generator_state_dict", "wan_original_to_diffusers",
    "load_generator_into", "load_wan_vae", "t5_original_to_hf", "load_umt5", "WanVAE",
]

_WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.", "module.")


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Tensors of a `.safetensors` file or the (possibly nested) dict of a torch pickle, on CPU."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        if p.suffix == ".safetensors":
            return dict(load_file(str(p)))
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure is a checkpoint problem
        raise CheckpointError(f"cannot read checkpoint {p}: {e}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: expected a dict of tensors, got {type(obj).__name__}")
    return obj


def strip_wrappers(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop FSDP / checkpoint-wrapper / torch.compile / DDP segments from every key."""
    out = {}
    for k, v in sd.items():
        for w in _WRAPPERS:
            k = k.replace(w, "")
        out[k] = v
    return out


def generator_state_dict(raw: Mapping[str, Any], *, use_ema: bool = False, source: str = "checkpoint") -> dict[str, Tensor]:
    """The generator's original-layout state dict out of a Self-Forcing / Causal-Forcing checkpoint.

    Args:
        raw: the loaded file: `{"generator": sd, "generator_ema": sd, ...}` or a bare state dict.
        use_ema: take `generator_ema` (the weights their inference scripts use with `--use_ema`).

    Returns:
        Wan original key names without the wrapper's `model.` prefix.
    """
    want = "generator_ema" if use_ema else "generator"
    if want in raw:
        sd = raw[want]
    elif any(k in raw for k in ("generator", "generator_ema")):
        raise CheckpointError(f"{source}: has no '{want}' (it has {sorted(k for k in raw if isinstance(raw[k], dict))})")
    elif all(isinstance(v, Tensor) for v in raw.values()):
        sd = raw
    else:
        raise CheckpointError(f"{source}: neither a generator checkpoint nor a state dict (keys {sorted(raw)[:5]})")
    sd = strip_wrappers(sd)
    if sd and all(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items()}
    return sd


def wan_original_to_diffusers(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Wan original transformer keys -> `WanTransformer3DModel` keys (diffusers' converter)."""
    # deferred: diffusers (seconds)
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    return convert_wan_transformer_to_diffusers(dict(sd))


def load_generator_into(
    student: nn.Module, path: str | Path, *, fmt: Literal["self_forcing", "causal_forcing", "wan"] = "self_forcing",
    use_ema: bool = False,
) -> None:
    """Strictly load a Self-Forcing / Causal-Forcing generator (or original Wan) checkpoint into `student.transformer`.

    Both projects save the same wrapper layout (`generator[_ema]` → `model.` +
    Wan original names); `fmt` only labels error messages.
    """
    src = f"{fmt} checkpoint {path}"
    sd = generator_state_dict(read_state_dict(path), use_ema=use_ema, source=src)
    load_into(student.transformer, wan_original_to_diffusers(sd), source=src + " (keys as converted to diffusers' layout)")


# ---------------------------------------------------------------------- VAE


def load_wan_vae(path: str | Path, *, config: Optional[dict[str, Any]] = None) -> nn.Module:
    """`AutoencoderKLWan` from Wan's original `Wan2.1_VAE.pth` (or a diffusers-layout safetensors)."""
    # deferred: diffusers (seconds)
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    vae = AutoencoderKLWan(**(config or {}))
    sd = strip_wrappers(read_state_dict(path))
    if "encoder.conv1.weight" in sd:  # original layout
        sd = convert_wan_vae_to_diffusers(sd)
    load_into(vae, sd, source=f"Wan VAE {path}")
    return vae.eval()


class WanVAE(nn.Module):
    """Wan VAE with the latent normalisation the Wan transformer was trained on.

    `encode`: video `(B, 3, 4k+1, H, W)` in [-1, 1] -> latents `(B, 16, k+1, H/8, W/8)`
    normalised per channel ((μ − mean)/std); `decode` inverts it.
    """

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae
        cfg = vae.config
        self.register_buffer("mean", torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1), persistent=False)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        mu = self.vae.encode(video.to(self.vae.dtype)).latent_dist.mode()
        return (mu.float() - self.mean) / self.std

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        z = latents.float() * self.std + self.mean
        return self.vae.decode(z.to(self.vae.dtype)).sample.clamp(-1, 1)


# ---------------------------------------------------------------------- UMT5

T5_ORIGINAL_TO_HF: list[tuple[str, str]] = [
    (r"^token_embedding\.weight$", "shared.weight"),
    (r"^blocks\.(\d+)\.norm1\.weight$", r"encoder.block.\1.layer.0.layer_norm.weight"),
    (r"^blocks\.(\d+)\.attn\.([qkvo])\.weight$", r"encoder.block.\1.layer.0.SelfAttention.\2.weight"),
    (r"^blocks\.(\d+)\.pos_embedding\.embedding\.weight$", r"encoder.block.\1.layer.0.SelfAttention.relative_attention_bias.weight"),
    (r"^blocks\.(\d+)\.norm2\.weight$", r"encoder.block.\1.layer.1.layer_norm.weight"),
    (r"^blocks\.(\d+)\.ffn\.gate\.0\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_0.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc1\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_1.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc2\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wo.weight"),
    (r"^norm\.weight$", "encoder.final_layer_norm.weight"),
]
"""Wan's original UMT5 encoder names -> transformers `UMT5EncoderModel` names (a fact table, not code).

Wan's UMT5 has a relative-position bias per block (UMT5, not T5's shared one) and
a gated-GELU FFN (gate → wi_0, fc1 → wi_1, fc2 → wo)."""


def t5_original_to_hf(sd: Mapping[str, Tensor], *, source: str = "checkpoint") -> dict[str, Tensor]:
    """Rename Wan's original UMT5 keys; `encoder.embed_tokens` shares `shared`. Unknown keys are an error."""
    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        for pat, rep in T5_ORIGINAL_TO_HF:
            if re.match(pat, k):
                out[re.sub(pat, rep, k)] = v
                break
        else:
            raise CheckpointError(f"{source}: unexpected key '{k}' for Wan's UMT5 encoder")
    if "shared.weight" in out:
        out["encoder.embed_tokens.weight"] = out["shared.weight"]
    return out


def load_umt5(path: str | Path, *, config: Optional[dict[str, Any]] = None, dtype: torch.dtype = torch.float32) -> nn.Module:
    """UMT5 encoder: a transformers folder (`from_pretrained`) or Wan's original `.pth` with `config` (UMT5Config kwargs)."""
    # deferred: transformers (seconds)
    from transformers import UMT5Config, UMT5EncoderModel

    p = Path(path)
    if p.is_dir():
        return UMT5EncoderModel.from_pretrained(str(p), torch_dtype=dtype).eval()
    if config is None:
        raise CheckpointError(f"{p}: an original UMT5 .pth needs its UMT5Config kwargs")
    model = UMT5EncoderModel(UMT5Config(**config)).to(dtype)
    load_into(model, t5_original_to_hf(strip_wrappers(read_state_dict(p)), source=str(p)), source=f"UMT5 {p}")
    return model.eval()
