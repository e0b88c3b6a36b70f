"""θ, θ_old and θ_ref of a big student without three full copies: peft LoRA adapters.

AFD needs three policies (DESIGN §2): θ (trained), θ_old (the sampling policy,
θ_old ← η·θ_old + (1 − η)·θ after each publish) and θ_ref (the frozen initial
student). For a 1.3B student three full bf16 copies are 7.8 GB of weights plus
θ's optimizer state; with LoRA they share one frozen base:

- adapter `default`: θ = base + ΔW_default (trainable);
- adapter `old`: θ_old = base + ΔW_old (frozen, soft-updated from `default`);
- adapters disabled: θ_ref = base.

LoRA B starts at zero, so all three are equal at step 0, as with copies.
`FullPolicies` is the full-finetune alternative with the same interface.

Gradient checkpointing recomputes θ's forward during backward, so a view always
restores the `default` adapter when it returns: backward then sees θ.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, Literal, Sequence

import torch
from torch import nn

__all__ = ["LoraPolicies", "FullPolicies", "PolicyView", "WAN_LORA_TARGETS"]

Policy = Literal["default", "old", "ref"]

WAN_LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
"""Linear layers of the Wan blocks that get adapters (attention and FFN, self- and cross-attention)."""


class PolicyView(nn.Module):
    """Calls the shared student under one policy; looks like a separate module to callers (`old(x_t, t, text, clean)`)."""

    def __init__(self, policies: "LoraPolicies", name: Policy) -> None:
        super().__init__()
        object.__setattr__(self, "_policies", policies)  # not a submodule: no duplicated parameters
        self.name = name

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._policies.use(self.name):
            return self._policies.student(*args, **kwargs)

    def rollout(self, *args: Any, **kwargs: Any) -> Any:
        with self._policies.use(self.name):
            return self._policies.student.rollout(*args, **kwargs)


class LoraPolicies:
    """Adapters `default` (θ) and `old` (θ_old) on the student's transformer; base = θ_ref.

    Args:
        student: a module with a `.transformer` (e.g. `WanCausalStudent`).
        rank, alpha: LoRA rank and scale numerator (ΔW = alpha/rank · B·A).
        target_modules: module-name suffixes that get adapters.
    """

    def __init__(self, student: nn.Module, *, rank: int = 64, alpha: float = 64.0,
                 target_modules: Sequence[str] = WAN_LORA_TARGETS) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        self.student = student
        cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0)
        student.requires_grad_(False)
        for name in ("default", "old"):
            inject_adapter_in_model(cfg, student.transformer, adapter_name=name)
        self.layers = [m for m in student.modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
        if not self.layers:
            raise ValueError(f"no module of the student matches LoRA targets {list(target_modules)}")
        with torch.no_grad():
            for layer in self.layers:
                layer.lora_A["old"].weight.copy_(layer.lora_A["default"].weight)
                layer.lora_B["old"].weight.copy_(layer.lora_B["default"].weight)
        self._active: Policy = "default"
        self._activate("default")

    def _params(self, name: str) -> Iterator[nn.Parameter]:
        for layer in self.layers:
            yield layer.lora_A[name].weight
            yield layer.lora_B[name].weight

    def _activate(self, name: Policy) -> None:
        for layer in self.layers:
            if name == "ref":
                layer.enable_adapters(False)
            else:
                layer.enable_adapters(True)
                layer.set_adapter(name)
        for p in self.student.parameters():  # peft toggles requires_grad on switches; θ alone trains
            p.requires_grad_(False)
        for p in self._params("default"):
            p.requires_grad_(True)
        self._active = name

    @contextlib.contextmanager
    def use(self, name: Policy) -> Iterator[None]:
        """Run the student as `name` inside the block; the previous policy comes back after."""
        prev = self._active
        self._activate(name)
        try:
            yield
        finally:
            self._activate(prev)

    def view(self, name: Policy) -> PolicyView:
        return PolicyView(self, name)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self._params("default"))

    @torch.no_grad()
    def publish(self, eta: float) -> None:
        """θ_old ← η·θ_old + (1 − η)·θ on the adapter weights (DESIGN §2.5)."""
        for po, pd in zip(self._params("old"), self._params("default")):
            po.lerp_(pd, 1.0 - eta)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Adapter tensors only (`<module>.lora_{A,B}.<adapter>.weight`): the base is the loaded checkpoint."""
        return {k: v.detach().clone() for k, v in self.student.state_dict().items() if ".lora_" in k}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        from afd_async.checkpoint import CheckpointError

        own = {k: v for k, v in self.student.state_dict().items() if ".lora_" in k}
        for k in own:
            if k not in state:
                raise CheckpointError(f"LoRA state: missing key '{k}'")
            if state[k].shape != own[k].shape:
                raise CheckpointError(f"LoRA state: key '{k}' has shape {tuple(state[k].shape)}, expected {tuple(own[k].shape)}")
        extra = sorted(set(state) - set(own))
        if extra:
            raise CheckpointError(f"LoRA state: unexpected key '{extra[0]}'")
        self.student.load_state_dict(state, strict=False)


class FullPolicies:
    """Full finetune: θ_old and θ_ref as deep copies (same interface as `LoraPolicies`)."""

    def __init__(self, student: nn.Module) -> None:
        self.student = student
        self.copies = {"old": copy.deepcopy(student).requires_grad_(False).eval(),
                       "ref": copy.deepcopy(student).requires_grad_(False).eval()}

    def view(self, name: Policy) -> nn.Module:
        return self.student if name == "default" else self.copies[name]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.student.parameters() if p.requires_grad]

    @torch.no_grad()
    def publish(self, eta: float) -> None:
        for po, pd in zip(self.copies["old"].parameters(), self.student.parameters()):
            po.lerp_(pd, 1.0 - eta)
