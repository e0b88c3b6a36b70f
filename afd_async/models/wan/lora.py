"""θ, θ_old, θ_ref and the eval EMA of a big student without full copies: peft LoRA adapters.

AFD needs three policies (DESIGN §2): θ (trained), θ_old (the sampling policy,
θ_old ← η·θ_old + (1 − η)·θ after each publish) and θ_ref (the frozen initial
student), plus an eval EMA of θ. For a 1.3B student four full bf16 copies are
10 GB of weights plus θ's optimizer state; with LoRA they share one frozen base:

- adapter `default`: θ = base + ΔW_default (trainable);
- adapter `old`: θ_old = base + ΔW_old (frozen, soft-updated from `default`);
- adapter `ema`: the eval EMA = base + ΔW_ema (EMA of `default`'s adapter tensors);
- adapters disabled: θ_ref = base.

Adapters are float32 (AdamW steps of ~1e-5 vanish in a bf16 weight); θ_old
also runs as a **merged copy** (base + ΔW_old in the base dtype, rebuilt at each
publish): rollouts and v_old then cost what the plain model costs (peft's
per-layer LoRA calls made the 1.3B rollout 1.4x slower, benchmarks/RESULTS.md),
for one extra copy of the weights (2.6 GB bf16 at 1.3B, docs/MEMORY.md).

LoRA B starts at zero, so all four are equal at step 0, as with copies. The
full-finetune alternative with the same surface is `models.policies.CopyPolicies`
(`FullPolicies` here).

Gradient checkpointing recomputes θ's forward during backward, so a view always
restores the `default` adapter when it returns: backward then sees θ.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator, Literal, Mapping, Sequence

import torch
from torch import nn

from afd_async.algo.policy import ema_decay_at
from afd_async.checkpoint import CheckpointError
from afd_async.models.policies import CopyPolicies

__all__ = ["LoraPolicies", "LoraEMA", "FullPolicies", "PolicyView", "WAN_LORA_TARGETS"]

Policy = Literal["default", "old", "ref", "ema"]
ADAPTERS: tuple[str, ...] = ("default", "old", "ema")

WAN_LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
"""Linear layers of the Wan blocks that get adapters (attention and FFN, self- and cross-attention)."""

FullPolicies = CopyPolicies
"""Full finetune: θ_old, θ_ref and the EMA as deep copies."""


class PolicyView(nn.Module):
    """The shared student under one policy; looks like a separate module to callers.

    `old(x_t, t, text, clean)`, `old.rollout(...)`, `old.decode(latents)` run the
    student with the `old` adapter; `old.state_dict()` is that adapter's tensors
    only (what the learner publishes to actors and saves), and `load_state_dict`
    loads exactly those, strictly.
    """

    def __init__(self, policies: "LoraPolicies", name: Policy) -> None:
        super().__init__()
        object.__setattr__(self, "_policies", policies)  # not a submodule: no duplicated parameters
        self.name = name

    @property
    def config(self) -> dict[str, Any]:
        return {"policy": self.name, "lora_rank": self._policies.rank, "lora_alpha": self._policies.alpha,
                "student": dict(getattr(self._policies.student, "config", {}))}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.name == "old" and self._policies.merged_old is not None:
            return self._policies.merged_old(*args, **kwargs)
        with self._policies.use(self.name):
            return self._policies.student(*args, **kwargs)

    def rollout(self, *args: Any, **kwargs: Any) -> Any:
        if self.name == "old" and self._policies.merged_old is not None:
            return self._policies.merged_old.rollout(*args, **kwargs)
        with self._policies.use(self.name):
            return self._policies.student.rollout(*args, **kwargs)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → RGB video (the VAE is policy-independent)."""
        return self._policies.student.decode(latents)

    def train(self, mode: bool = True) -> "PolicyView":
        self._policies.student.train(mode)
        return super().train(mode)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {k: p.detach() for k, p in self._policies.adapter_params(self.name).items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        self._policies.load_adapter(self.name, state_dict)
        return torch.nn.modules.module._IncompatibleKeys([], [])


class LoraEMA:
    """Eval EMA of θ's adapter tensors in the `ema` adapter (the interface of `algo.policy.EMA`)."""

    def __init__(self, policies: "LoraPolicies", decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.policies, self.decay, self.updates = policies, decay, 0
        self.module = policies.view("ema")

    @torch.no_grad()
    def update(self, source: Any = None) -> None:
        decay = ema_decay_at(self.decay, self.updates)
        for pe, pd in zip(self.policies.adapter_params("ema").values(), self.policies.adapter_params("default").values()):
            pe.lerp_(pd, 1.0 - decay)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])


class LoraPolicies:
    """Adapters `default` (θ), `old` (θ_old) and `ema` on the student's transformer; base = θ_ref.

    Args:
        student: a module with a `.transformer` (e.g. `WanCausalStudent`).
        rank, alpha: LoRA rank and scale numerator (ΔW = alpha/rank · B·A).
        target_modules: module-name suffixes that get adapters.
        eval_ema: decay of the eval EMA.
        merge_old: run θ_old as a merged copy (see the module docstring); False runs it through the adapters.
    """

    def __init__(self, student: nn.Module, *, rank: int = 64, alpha: float = 64.0,
                 target_modules: Sequence[str] = WAN_LORA_TARGETS, eval_ema: float = 0.99, merge_old: bool = True) -> None:
        # deferred: peft (~10 s with transformers), only with LoRA
        from peft import LoraConfig, inject_adapter_in_model

        self.student, self.rank, self.alpha = student, rank, alpha
        cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0)
        student.requires_grad_(False)
        self.merged_old: nn.Module | None = copy.deepcopy(student).eval() if merge_old else None  # before injection
        for name in ADAPTERS:
            inject_adapter_in_model(cfg, student.transformer, adapter_name=name)
        self.layers = [m for m in student.modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
        if not self.layers:
            raise ValueError(f"no module of the student matches LoRA targets {list(target_modules)}")
        for layer in self.layers:  # float32 adapters: optimizer steps and soft updates keep their precision
            for a in ADAPTERS:
                layer.lora_A[a].float()
                layer.lora_B[a].float()
        self._merge_pairs: list[tuple[nn.Module, nn.Linear]] = []
        if self.merged_old is not None:
            plain = dict(self.merged_old.named_modules())
            self._merge_pairs = [(m, plain[n]) for n, m in student.named_modules() if m in self.layers]
        named = dict(student.named_parameters())
        self._adapters = {a: {n: p for n, p in named.items() if f".lora_A.{a}." in n or f".lora_B.{a}." in n}
                          for a in ADAPTERS}
        with torch.no_grad():
            for a in ("old", "ema"):
                for po, pd in zip(self._adapters[a].values(), self._adapters["default"].values()):
                    po.copy_(pd)
        self._active: Policy = "default"
        self._activate("default")
        self._merge_old()
        self.old, self.ref = self.view("old"), self.view("ref")
        self.ema = LoraEMA(self, eval_ema)

    @torch.no_grad()
    def _merge_old(self) -> None:
        """merged_old's target weights ← base + (alpha/rank)·B_old·A_old (float32 sum, one rounding)."""
        for layer, lin in self._merge_pairs:
            base = layer.base_layer.weight
            delta = layer.lora_B["old"].weight.float() @ layer.lora_A["old"].weight.float() * layer.scaling["old"]
            lin.weight.copy_((base.float() + delta).to(lin.weight.dtype))

    def adapter_params(self, name: Policy) -> dict[str, nn.Parameter]:
        """`{state-dict key: parameter}` of one adapter (empty for `ref`, the base)."""
        return self._adapters.get(name, {})

    def load_adapter(self, name: Policy, state: Mapping[str, torch.Tensor]) -> None:
        """Copy one adapter's tensors in; a missing, unexpected or mis-shaped key is an error naming it."""
        own = self.adapter_params(name)
        for k, p in own.items():
            if k not in state:
                raise CheckpointError(f"LoRA adapter '{name}': missing key '{k}'")
            if tuple(state[k].shape) != tuple(p.shape):
                raise CheckpointError(f"LoRA adapter '{name}': key '{k}' has shape {tuple(state[k].shape)}, "
                                      f"expected {tuple(p.shape)}")
        extra = sorted(set(state) - set(own))
        if extra:
            raise CheckpointError(f"LoRA adapter '{name}': unexpected key '{extra[0]}'")
        with torch.no_grad():
            for k, p in own.items():
                p.copy_(state[k])
        if name == "old":
            self._merge_old()

    def _activate(self, name: Policy) -> None:
        for layer in self.layers:
            if name == "ref":
                layer.enable_adapters(False)
            else:
                layer.enable_adapters(True)
                layer.set_adapter(name)
        for p in self.student.parameters():  # peft toggles requires_grad on switches; θ alone trains
            p.requires_grad_(False)
        for p in self._adapters["default"].values():
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
        return list(self._adapters["default"].values())

    @torch.no_grad()
    def publish(self, eta: float) -> None:
        """θ_old ← η·θ_old + (1 − η)·θ on the adapter weights (DESIGN §2.5)."""
        for po, pd in zip(self._adapters["old"].values(), self._adapters["default"].values()):
            po.lerp_(pd, 1.0 - eta)
        self._merge_old()

    def state_dict(self) -> dict[str, Any]:
        """Adapter tensors only (`lora`: `<module>.lora_{A,B}.<adapter>.weight`) and the EMA's count: the base is the loaded checkpoint."""
        lora = {k: p.detach().clone() for a in ADAPTERS for k, p in self._adapters[a].items()}
        return {"lora": lora, "ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        lora = state.get("lora")
        if not isinstance(lora, Mapping):
            raise CheckpointError("LoRA policies state: no 'lora' tensors (a full-finetune state?)")
        for a in ADAPTERS:
            self.load_adapter(a, {k: v for k, v in lora.items() if f".lora_A.{a}." in k or f".lora_B.{a}." in k})
        extra = sorted(k for k in lora if not any(f".lora_A.{a}." in k or f".lora_B.{a}." in k for a in ADAPTERS))
        if extra:
            raise CheckpointError(f"LoRA policies state: unexpected key '{extra[0]}'")
        self.ema.load_state_dict(state["ema"])
