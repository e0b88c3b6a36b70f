"""VideoReward discriminator D_φ(clip, prompt): Qwen2-VL backbone + LoRA + scalar reward head.

As in VideoReward (VideoAlign, "Improving Video Generation with Human
Feedback", 2025): the clip and an evaluation instruction holding reward
special tokens (`<|VQ_reward|>`, `<|MQ_reward|>`, `<|TA_reward|>`) go through
Qwen2-VL in its chat format; a bias-free linear head `rm_head (hidden → 1)`
reads the last hidden state at each reward token. D's scalar is their sum
(VideoReward's "Overall"), the Bradley–Terry logit of DESIGN §2.2.

Only LoRA (r=64, α=128, on the language model's attention and MLP) and
`rm_head` train; the vision tower and the base LLM stay frozen. The LM head
(151k vocabulary) is never run: the last hidden state is all D needs.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from afd_async.models.videoreward.video import budget_size, sample_indices, video_patches

__all__ = ["REWARD_TOKENS", "QWEN2_VL_2B", "VideoRewardDiscriminator", "build_chat"]

REWARD_TOKENS: tuple[str, ...] = ("<|VQ_reward|>", "<|MQ_reward|>", "<|TA_reward|>")
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

QWEN2_VL_2B: dict[str, Any] = dict(
    text_config=dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                     num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                     rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, rope_theta=1000000.0,
                     tie_word_embeddings=True),
    vision_config=dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4, patch_size=14,
                       spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
    image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
)
"""Qwen2-VL-2B-Instruct architecture (VideoReward's backbone) as `Qwen2VLConfig` kwargs."""

_INSTRUCTION = (
    "Rate this generated video on three separate criteria. Visual quality: are single frames sharp, plausible "
    "and well composed? Motion quality: is the motion smooth, stable and physically natural? Text alignment: do "
    "the content and the motion match the prompt? The prompt was \"{prompt}\".\n"
    "Visual quality: {vq}\nMotion quality: {mq}\nText alignment: {ta}"
)


def build_chat(prompt: str, n_video_tokens: int, reward_tokens: Sequence[str] = REWARD_TOKENS) -> str:
    """The Qwen2-VL chat text (system, user turn with the video then the instruction, assistant opening)."""
    vq, mq, ta = (list(reward_tokens) + ["", "", ""])[:3]
    user = "<|vision_start|>" + "<|video_pad|>" * n_video_tokens + "<|vision_end|>"
    user += _INSTRUCTION.format(prompt=prompt.replace('"', "'"), vq=vq, mq=mq, ta=ta)
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


class VideoRewardDiscriminator(nn.Module):
    """Scores clips for prompts; higher = more like the teacher.

    Args:
        backbone: `Qwen2VLConfig` kwargs (random init; weights come from a checkpoint),
            or None with `backbone_path` (a transformers folder, e.g. Qwen2-VL-2B-Instruct).
        tokenizer: a tokenizer knowing Qwen2-VL's chat/vision tokens; the reward
            tokens are added if missing (embeddings resized).
        lora_rank, lora_alpha: LoRA on the language model (0 = no LoRA, full backbone frozen).
        fps: frame rate of the clips given to `forward`.
        sample_fps, max_pixels: VideoReward's frame sampling (2 fps) and per-frame pixel budget.
        gradient_checkpointing: recompute LLM layers in backward.
    """

    def __init__(
        self, *, tokenizer: Any, backbone: Optional[dict[str, Any]] = None, backbone_path: Optional[str] = None,
        lora_rank: int = 64, lora_alpha: float = 128.0, fps: float = 16.0, sample_fps: float = 2.0,
        max_pixels: int = 448 * 448, reward_tokens: Sequence[str] = REWARD_TOKENS, gradient_checkpointing: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        # deferred: transformers (seconds) loads only when a VideoReward D is built
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        self.config: dict[str, Any] = dict(backbone=backbone, backbone_path=backbone_path, lora_rank=lora_rank,
                                           lora_alpha=lora_alpha, fps=fps, sample_fps=sample_fps, max_pixels=max_pixels,
                                           reward_tokens=list(reward_tokens))
        if (backbone is None) == (backbone_path is None):
            raise ValueError("give exactly one of backbone (config kwargs) or backbone_path")
        if backbone_path is not None:
            self.backbone = Qwen2VLForConditionalGeneration.from_pretrained(backbone_path, torch_dtype=dtype)
        else:
            self.backbone = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**backbone)).to(dtype)
        self.tokenizer = tokenizer
        missing = [t for t in reward_tokens if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
        self.reward_ids = [tokenizer.convert_tokens_to_ids(t) for t in reward_tokens]
        vocab = self.backbone.get_input_embeddings().weight.shape[0]
        if max(self.reward_ids) >= vocab:
            self.backbone.resize_token_embeddings(max(self.reward_ids) + 1)
        self.backbone.requires_grad_(False)
        if lora_rank > 0:
            # deferred: peft (~10 s with transformers), only with LoRA
            from peft import LoraConfig, inject_adapter_in_model

            inject_adapter_in_model(LoraConfig(r=lora_rank, lora_alpha=lora_alpha, target_modules=LORA_TARGETS,
                                               lora_dropout=0.0), self.backbone)
        hidden = self.backbone.config.text_config.hidden_size
        self.rm_head = nn.Linear(hidden, 1, bias=False, dtype=dtype)
        nn.init.normal_(self.rm_head.weight, std=hidden**-0.5)
        if gradient_checkpointing:
            self.backbone.model.language_model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        vc = self.backbone.config.vision_config
        self.patch, self.temporal_patch, self.merge = vc.patch_size, vc.temporal_patch_size, vc.spatial_merge_size
        self.fps, self.sample_fps, self.max_pixels = fps, sample_fps, max_pixels

        self._wants_mm_types = "mm_token_type_ids" in inspect.signature(self.backbone.model.forward).parameters

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def inputs(self, video: Tensor, prompts: Sequence[str]) -> dict[str, Tensor]:
        """Backbone inputs for clips `(B, 3, F, H, W)` in [-1, 1] and their prompts."""
        b, _, f, h, w = video.shape
        idx = sample_indices(f, self.fps, sample_fps=self.sample_fps, temporal_patch=self.temporal_patch)
        size = budget_size(h, w, max_pixels=self.max_pixels, factor=self.patch * self.merge)
        pix, grids, ids = [], [], []
        for i in range(b):
            p, g = video_patches(video[i][:, idx], size=size, patch=self.patch, temporal_patch=self.temporal_patch,
                                 merge=self.merge)
            pix.append(p)
            grids.append(g)
            n_tok = int(g.prod()) // self.merge**2
            ids.append(self.tokenizer(build_chat(prompts[i], n_tok), add_special_tokens=False)["input_ids"])
        length = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((b, length), pad, dtype=torch.long)
        mask = torch.zeros((b, length), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        dev = self.rm_head.weight.device
        extra = {}
        if self._wants_mm_types:  # newer transformers compute M-RoPE from per-token modality types (2 = video)
            extra["mm_token_type_ids"] = ((input_ids == self.backbone.config.video_token_id).int() * 2).to(dev)
        return dict(**extra, input_ids=input_ids.to(dev), attention_mask=mask.to(dev),
                    pixel_values_videos=torch.cat(pix).to(dev, self.rm_head.weight.dtype),
                    video_grid_thw=torch.stack(grids).to(dev))

    def forward(self, video: Tensor, prompts: Sequence[str]) -> Tensor:
        """Score clips.

        Args:
            video: `(B, 3, F, H, W)` in [-1, 1] at `fps`.
            prompts: B prompt strings.

        Returns:
            `(B,)` scores: the sum of the reward-token rewards (Bradley–Terry logits).
        """
        batch = self.inputs(video, prompts)
        hidden = self.backbone.model(**batch, use_cache=False).last_hidden_state  # (B, L, hidden)
        is_reward = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
        for rid in self.reward_ids:
            is_reward |= batch["input_ids"] == rid
        counts = is_reward.sum(1)
        if (counts != len(self.reward_ids)).any():
            raise RuntimeError(f"expected {len(self.reward_ids)} reward tokens per sample, found {counts.tolist()}")
        r = self.rm_head(hidden[is_reward].to(self.rm_head.weight.dtype)).view(video.shape[0], -1)
        return r.sum(-1).float()

    def score(self, video: Tensor, *, prompts: Sequence[str], text: Optional[Tensor] = None) -> Tensor:
        """The uniform discriminator call (DESIGN §2.2 D_φ(x, c)): this D reads the prompt strings; `text` is unused."""
        return self(video, prompts)

    # The learners publish, checkpoint and reload D through `state_dict`: only the trained tensors
    # (LoRA, rm_head) travel; the frozen 2B backbone comes from `backbone_path` in every process.

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:  # type: ignore[override]
        """Trained tensors only: LoRA and `rm_head` (the full module's tensors: `nn.Module.state_dict(d)`)."""
        full = super().state_dict(*args, **kwargs)
        return {k: v for k, v in full.items() if ".lora_" in k or k.startswith("rm_head.")}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Load trained tensors; with `strict`, exactly the keys of `state_dict()` (a full state dict loads too)."""
        own = self.state_dict()
        if strict:
            missing = [k for k in own if k not in state_dict]
            if missing:
                raise RuntimeError(f"VideoReward D state: missing key '{missing[0]}' ({len(missing)} missing)")
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if strict and result.unexpected_keys:
            raise RuntimeError(f"VideoReward D state: unexpected key '{result.unexpected_keys[0]}'")
        return result
